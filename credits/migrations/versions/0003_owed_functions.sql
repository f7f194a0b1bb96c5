-- ledger_0003: a hold is spending, refused while the account owes credits (the 'owed' outcome sends
-- the caller to the general path, which raises OwesCredits with the amount).

CREATE OR REPLACE FUNCTION ledger_reserve(
    p_id text, p_code text, p_amount bigint, p_user text, p_credit_id bigint,
    p_timeout_us bigint, p_meta text, p_fp text, p_now bigint
) RETURNS TABLE (outcome text, transfer_pk bigint, available bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_fp text; v_pk bigint; v_user bigint; v_available bigint;
BEGIN
    SELECT t.fingerprint, t.pk INTO v_fp, v_pk FROM ledger_transfers t WHERE t.transfer_id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN v_fp = p_fp THEN 'exists' ELSE 'conflict' END, v_pk, NULL::bigint;
        RETURN;
    END IF;
    SELECT a.id INTO v_user FROM ledger_accounts a WHERE a.name = p_user AND a.kind = 'user';
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'insufficient'::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_open_holds o WHERE o.account_id = v_user AND o.expires_us <= p_now) THEN
        RETURN QUERY SELECT 'stale'::text, NULL::bigint, NULL::bigint;  -- sweep first, on the general path
        RETURN;
    END IF;
    UPDATE ledger_accounts SET debits_pending = debits_pending + p_amount
        WHERE id = v_user AND credits_posted - debits_posted - debits_pending >= p_amount
          AND owed = 0;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = v_user AND a.owed > 0) THEN
            RETURN QUERY SELECT 'owed'::text, NULL::bigint, NULL::bigint;  -- the general path says so
            RETURN;
        END IF;
        SELECT a.credits_posted - a.debits_posted - a.debits_pending INTO v_available
            FROM ledger_accounts a WHERE a.id = v_user;
        RETURN QUERY SELECT 'insufficient'::text, NULL::bigint, v_available;
        RETURN;
    END IF;
    INSERT INTO ledger_transfers (transfer_id, kind, code, amount, debit_id, credit_id, hold_pk,
                                  expires_us, ts_us, metadata, fingerprint)
        VALUES (p_id, 'pending', p_code, p_amount, v_user, p_credit_id, NULL,
                p_now + p_timeout_us, p_now, p_meta, p_fp)
        RETURNING pk INTO v_pk;
    INSERT INTO ledger_open_holds (hold_pk, account_id, expires_us) VALUES (v_pk, v_user, p_now + p_timeout_us);
    INSERT INTO ledger_log_queue (transfer_pk) VALUES (v_pk);
    RETURN QUERY SELECT 'ok'::text, v_pk, NULL::bigint;
END $$;

