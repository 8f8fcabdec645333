-- The language a message is rendered in, when the cause knows it better than the recipient's
-- account settings: a direct message (a clinic's invitation to claim a record) has no account
-- whose language the worker could read, so the invitation carries the language staff chose or
-- the patient's preferred `communication` language. NULL: the account's language, else the
-- server's default (`[notify] default_language`), as before.
ALTER TABLE notification_outbox ADD COLUMN language TEXT;
