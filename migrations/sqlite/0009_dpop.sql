-- DPoP (RFC 9449 §5): the RFC 7638 thumbprint of the key a refresh family is bound to. NULL for
-- an unbound family (confidential clients, or a public client that sent no proof); a bound
-- family rotates only with a proof of this key.
ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
