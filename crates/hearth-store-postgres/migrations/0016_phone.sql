-- Phone numbers on accounts (see hearth-server/src/auth/phone.rs).
--
-- `phone` (UNIQUE, from 0004) now holds only a *verified* number: one that signs in by OTP and
-- receives SMS. A number set by staff (admin account creation, a clinic's invitation) counts as
-- verified; every phone already on an account came that way, so existing rows stay as they are.
-- `phone_pending` holds a number a user typed (at registration or `POST /api/v1/auth/phone`) until
-- they enter the code sent to it: it is not unique, never signs in and receives no messages, so an
-- unverified claim can neither block the number's owner nor reveal that the number has an account.
-- `phone_verified` in the API is `phone IS NOT NULL`.
ALTER TABLE accounts ADD COLUMN phone_pending TEXT;
