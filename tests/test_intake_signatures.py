"""Signature checks against intake.md's test vectors, and every way a request is refused."""

from __future__ import annotations

import time

import pytest

from closeconv.intake.signatures import (
    CHATWOOT_TIMESTAMP_WINDOW_S,
    chatwoot_signature,
    respondio_signature,
    verify_chatwoot,
    verify_respondio,
)


@pytest.mark.parametrize(
    ("key", "body", "expected"),
    [
        ("secret-key", b'{"some":"payload"}', "Bq1g+eoWPzyDxcVsyqSfJaTHxwAIVJPuJ/kAf+Ef0QA="),
        ("secret", b'{"event":"message","data":"test"}', "UtAE5LaeNjrL33PUEQfh69YKw7UhrrkOL9tQN0+xIrI="),
    ],
)
def test_respondio_signature_matches_the_published_vectors(key, body, expected):
    assert respondio_signature(key, body) == expected
    assert verify_respondio(body, expected, [key]).ok


def test_respondio_keys_are_tried_in_turn():
    body = b'{"event":"message","data":"test"}'
    sig = "UtAE5LaeNjrL33PUEQfh69YKw7UhrrkOL9tQN0+xIrI="
    assert verify_respondio(body, sig, ["other-webhook-key", "secret"]).ok
    assert verify_respondio(body, " " + sig + " ", ["secret"]).ok  # header whitespace is not part of it


def test_respondio_refuses_wrong_key_missing_header_and_changed_body():
    body = b'{"some":"payload"}'
    sig = respondio_signature("secret-key", body)
    assert verify_respondio(body, sig, ["wrong-key"]).reason == "bad_signature"
    assert verify_respondio(body, None, ["secret-key"]).reason == "missing_signature"
    assert verify_respondio(body, "", ["secret-key"]).reason == "missing_signature"
    assert verify_respondio(body + b" ", sig, ["secret-key"]).reason == "bad_signature"
    assert verify_respondio(body, sig, []).reason == "bad_signature"
    # the hex form of the same MAC is not what respond.io sends
    import hashlib
    import hmac
    hexsig = hmac.new(b"secret-key", body, hashlib.sha256).hexdigest()
    assert not verify_respondio(body, hexsig, ["secret-key"]).ok


def test_chatwoot_signature_over_timestamp_and_body():
    body = b'{"event":"message_created","id":1}'
    now = time.time()
    ts = str(int(now))
    sig = chatwoot_signature("cw-secret", ts, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_chatwoot(body, sig, ts, "cw-secret", now).ok
    assert verify_chatwoot(body, sig.upper().replace("SHA256=", "sha256="), ts, "cw-secret", now).ok


def test_chatwoot_refuses_stale_missing_and_wrong():
    body = b'{"event":"message_created","id":1}'
    now = time.time()
    old = str(int(now) - CHATWOOT_TIMESTAMP_WINDOW_S - 5)
    assert verify_chatwoot(body, chatwoot_signature("s", old, body), old, "s", now).reason == "stale_timestamp"
    future = str(int(now) + CHATWOOT_TIMESTAMP_WINDOW_S + 5)
    assert verify_chatwoot(body, chatwoot_signature("s", future, body), future, "s", now).reason == "stale_timestamp"
    ts = str(int(now))
    assert verify_chatwoot(body, None, ts, "s", now).reason == "missing_signature"
    assert verify_chatwoot(body, chatwoot_signature("s", ts, body), None, "s", now).reason == "missing_timestamp"
    assert verify_chatwoot(body, chatwoot_signature("s", ts, body), "yesterday", "s", now).reason == "bad_timestamp"
    assert verify_chatwoot(body, chatwoot_signature("other", ts, body), ts, "s", now).reason == "bad_signature"
    # the timestamp is signed: moving it breaks the signature
    ts2 = str(int(now) - 1)
    assert verify_chatwoot(body, chatwoot_signature("s", ts, body), ts2, "s", now).reason == "bad_signature"
