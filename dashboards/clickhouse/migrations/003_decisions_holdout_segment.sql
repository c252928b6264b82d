-- 003: decisions say which holdout made a control, and the customer's segment, for filters.
-- holdout: '' (not held out), 'trigger' (the trigger's holdoutPercent) or 'global' (the
-- customer is in the global control group, policy.globalHoldoutPercent).
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS holdout LowCardinality(String) DEFAULT '' AFTER suppressed_by;

-- segment: the customer's profile segment at the decision ('' when unknown).
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS segment LowCardinality(String) DEFAULT '' AFTER card_id;
