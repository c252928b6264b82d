-- 004: a dead letter says whether its original bytes were cut, and how long they were.
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS original_truncated UInt8 DEFAULT 0 AFTER original_encoding;

ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS original_bytes UInt64 DEFAULT 0 AFTER original_truncated;
