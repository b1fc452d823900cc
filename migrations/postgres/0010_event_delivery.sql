-- Security Event Tokens for subscribers (`events/delivery.rs`).
--
-- Ordering: a delivery may name the subject it is about and that subject's event number; the
-- dispatcher then claims it only when no earlier delivery of the same (route, target, subject)
-- is still pending, so one person's events reach one subscriber in order. NULL: unordered
-- (back-channel logout).
--
-- Replays: an operator may send a finished delivery again as a new delivery of the same event
-- (a new `jti`, the original `txn`); `replay` numbers them (0 is the original), so the unique
-- key that makes fan-out idempotent becomes (event_id, route, target, replay).
ALTER TABLE deliveries ADD COLUMN subject TEXT;
ALTER TABLE deliveries ADD COLUMN seq BIGINT;
ALTER TABLE deliveries ADD COLUMN replay BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_route_target_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_route_target_replay
    UNIQUE (event_id, route, target, replay);
CREATE INDEX deliveries_ordering ON deliveries (route, target, subject, seq)
    WHERE status = 'pending' AND subject IS NOT NULL;
