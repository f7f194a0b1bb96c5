-- The ledger's two hot operations on PostgreSQL, one round trip each. Same rules as credits/ops.py:
-- idempotency by transfer id and fingerprint, a conditional update that never overdraws a user,
-- a hold claimed by deleting its open-hold row. Outcomes are returned, not raised, so nothing is
-- written unless the outcome is 'ok'.

CREATE FUNCTION ledger_reserve(
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
        WHERE id = v_user AND credits_posted - debits_posted - debits_pending >= p_amount;
    IF NOT FOUND THEN
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

-- next
CREATE FUNCTION ledger_resolve(
    p_id text, p_kind text, p_hold text, p_amount bigint, p_meta text, p_fp text, p_now bigint
) RETURNS TABLE (outcome text, transfer_pk bigint, amount bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_fp text; v_pk bigint; v_done text;
    h_pk bigint; h_amount bigint; h_debit bigint; h_credit bigint; h_expires bigint;
    h_dkind text; h_ckind text; v_posted bigint; v_amount bigint;
BEGIN
    SELECT t.fingerprint, t.pk INTO v_fp, v_pk FROM ledger_transfers t WHERE t.transfer_id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN v_fp = p_fp THEN 'exists' ELSE 'conflict' END, v_pk, NULL::bigint;
        RETURN;
    END IF;
    SELECT t.pk, t.amount, t.debit_id, t.credit_id, t.expires_us, d.kind, c.kind
        INTO h_pk, h_amount, h_debit, h_credit, h_expires, h_dkind, h_ckind
        FROM ledger_transfers t
        JOIN ledger_accounts d ON d.id = t.debit_id JOIN ledger_accounts c ON c.id = t.credit_id
        WHERE t.transfer_id = p_hold AND t.kind = 'pending';
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT r.kind, r.pk, r.fingerprint INTO v_done, v_pk, v_fp
        FROM ledger_transfers r WHERE r.hold_pk = h_pk AND r.transfer_id <> p_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'resolved:' || v_done, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT r.pk, r.fingerprint INTO v_pk, v_fp FROM ledger_transfers r WHERE r.transfer_id = p_id;
    IF FOUND THEN  -- this very request committed a moment ago, after the first look
        RETURN QUERY SELECT CASE WHEN v_fp = p_fp THEN 'exists' ELSE 'conflict' END, v_pk, NULL::bigint;
        RETURN;
    END IF;
    IF p_kind = 'post' AND h_expires <= p_now THEN
        RETURN QUERY SELECT 'expired'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_kind = 'post' AND p_amount > h_amount THEN
        RETURN QUERY SELECT 'exceeds'::text, NULL::bigint, h_amount;
        RETURN;
    END IF;
    -- Claim the hold: of concurrent resolutions, one deletes the row; the others find it gone.
    DELETE FROM ledger_open_holds WHERE hold_pk = h_pk;
    IF NOT FOUND THEN
        SELECT t.fingerprint, t.pk INTO v_fp, v_pk FROM ledger_transfers t WHERE t.transfer_id = p_id;
        IF FOUND AND v_fp = p_fp THEN
            RETURN QUERY SELECT 'exists'::text, v_pk, NULL::bigint;
            RETURN;
        END IF;
        SELECT r.kind INTO v_done FROM ledger_transfers r WHERE r.hold_pk = h_pk;
        RETURN QUERY SELECT 'resolved:' || coalesce(v_done, ''), NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_posted := CASE WHEN p_kind = 'post' THEN p_amount ELSE 0 END;
    v_amount := CASE WHEN p_kind = 'post' THEN p_amount ELSE h_amount END;
    IF h_dkind = 'user' THEN
        UPDATE ledger_accounts SET debits_pending = debits_pending - h_amount,
            debits_posted = debits_posted + v_posted WHERE id = h_debit;
    END IF;
    IF h_ckind = 'user' THEN
        UPDATE ledger_accounts SET credits_pending = credits_pending - h_amount,
            credits_posted = credits_posted + v_posted WHERE id = h_credit;
    END IF;
    INSERT INTO ledger_transfers (transfer_id, kind, code, amount, debit_id, credit_id, hold_pk,
                                  expires_us, ts_us, metadata, fingerprint)
        SELECT p_id, p_kind, t.code, v_amount, h_debit, h_credit, h_pk, NULL, p_now, p_meta, p_fp
        FROM ledger_transfers t WHERE t.pk = h_pk
        RETURNING pk INTO v_pk;
    INSERT INTO ledger_log_queue (transfer_pk) VALUES (v_pk);
    RETURN QUERY SELECT 'ok'::text, v_pk, v_amount;
END $$;

-- next
-- Group commit for PostgreSQL: many reserves in one call and one commit, each in its own
-- subtransaction so it keeps its own outcome. Callers sort by user, so batches lock in one order.
CREATE FUNCTION ledger_reserve_many(
    p_ids text[], p_codes text[], p_amounts bigint[], p_users text[], p_credit_id bigint,
    p_timeouts_us bigint[], p_metas text[], p_fps text[], p_now bigint
) RETURNS TABLE (i integer, outcome text, transfer_pk bigint, available bigint)
LANGUAGE plpgsql AS $$
DECLARE k integer;
BEGIN
    FOR k IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        BEGIN
            RETURN QUERY SELECT k, r.outcome, r.transfer_pk, r.available
                FROM ledger_reserve(p_ids[k], p_codes[k], p_amounts[k], p_users[k], p_credit_id,
                                    p_timeouts_us[k], p_metas[k], p_fps[k], p_now) r;
        EXCEPTION WHEN unique_violation OR deadlock_detected THEN
            RETURN QUERY SELECT k, 'retry'::text, NULL::bigint, NULL::bigint;
        END;
    END LOOP;
END $$;

-- next
CREATE FUNCTION ledger_resolve_many(
    p_ids text[], p_kinds text[], p_holds text[], p_amounts bigint[], p_metas text[],
    p_fps text[], p_now bigint
) RETURNS TABLE (i integer, outcome text, transfer_pk bigint, amount bigint)
LANGUAGE plpgsql AS $$
DECLARE k integer;
BEGIN
    FOR k IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        BEGIN
            RETURN QUERY SELECT k, r.outcome, r.transfer_pk, r.amount
                FROM ledger_resolve(p_ids[k], p_kinds[k], p_holds[k], p_amounts[k], p_metas[k],
                                    p_fps[k], p_now) r;
        EXCEPTION WHEN unique_violation OR deadlock_detected THEN
            RETURN QUERY SELECT k, 'retry'::text, NULL::bigint, NULL::bigint;
        END;
    END LOOP;
END $$;
