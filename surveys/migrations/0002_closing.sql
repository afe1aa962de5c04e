-- An organiser may close a survey before its closes_at with a statement
-- signed by the device that signed the definition. The statement is kept
-- here and served with the survey and every board page; closes_at is then
-- the moment kanald recorded it.
ALTER TABLE surveys ADD COLUMN closing TEXT;
