-- 007: touchpoints cancelled while waiting (status 'cancelled'): why, and what cancelled them.
-- cancel_reason: goal_reached | consent_withdrawn | risk_alert; '' for other statuses.
-- cancelled_by: the eventId that reached the goal or withdrew consent, or the alert's id.
ALTER TABLE {db}.deliveries ADD COLUMN IF NOT EXISTS cancel_reason LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.deliveries ADD COLUMN IF NOT EXISTS cancelled_by String DEFAULT '';
