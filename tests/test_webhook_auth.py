"""Signed webhooks, the pure check: the Standard Webhooks spec's published test vectors (from the
standardwebhooks library's own tests), the reference library as a sender, GitHub's and bearer schemes,
rotation, and malformed headers refused with the header named (never an exception of another kind)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from router.pipeline import WebhookAuth
from router.webhook_auth import TOLERANCE_S, WebhookRefused, sign_github, sign_standard, verify_webhook

# standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py
VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_BAD_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
VECTOR_OTHER_SIGS = [
    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
]

SW = WebhookAuth("standard-webhooks", "SW_SECRET")
GH = WebhookAuth("github", "GH_SECRET")
BEARER = WebhookAuth("bearer", "HOOK_TOKEN")


def vector_headers(signature: str = VECTOR_SIG) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": signature}


def refused(auth, headers, body, env, now_s=None) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as err:
        verify_webhook(auth, headers, body, environ=env, now_s=now_s)
    return err.value


def test_the_spec_vector_signs_and_verifies():
    assert sign_standard(VECTOR_KEY, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    env = {"SW_SECRET": VECTOR_KEY}
    assert verify_webhook(SW, vector_headers(), VECTOR_BODY, environ=env, now_s=VECTOR_TS) == VECTOR_ID
    # the key without its prefix, header names in any case
    upper = {k.upper(): v for k, v in vector_headers().items()}
    assert verify_webhook(SW, upper, VECTOR_BODY, environ={"SW_SECRET": VECTOR_KEY[6:]}, now_s=VECTOR_TS) == VECTOR_ID


def test_the_spec_vector_with_several_signatures_verifies_by_the_one_that_matches():
    sigs = " ".join([VECTOR_OTHER_SIGS[0], VECTOR_OTHER_SIGS[1], VECTOR_SIG, VECTOR_OTHER_SIGS[0]])
    env = {"SW_SECRET": VECTOR_KEY}
    assert verify_webhook(SW, vector_headers(sigs), VECTOR_BODY, environ=env, now_s=VECTOR_TS) == VECTOR_ID


def test_the_spec_vectors_bad_signature_and_tampered_parts_are_refused():
    env = {"SW_SECRET": VECTOR_KEY}
    err = refused(SW, vector_headers(VECTOR_BAD_SIG), VECTOR_BODY, env, VECTOR_TS)
    assert err.header == "webhook-signature" and "no signature in webhook-signature matches" in err.message
    assert refused(SW, vector_headers(), b'{"test": 2432232315}', env, VECTOR_TS).header == "webhook-signature"
    other_id = {**vector_headers(), "webhook-id": "msg_other"}
    assert refused(SW, other_id, VECTOR_BODY, env, VECTOR_TS).header == "webhook-signature"
    only_v2 = vector_headers("v2," + VECTOR_SIG[3:])
    assert refused(SW, only_v2, VECTOR_BODY, env, VECTOR_TS).header == "webhook-signature"


def test_timestamps_outside_five_minutes_are_refused_either_way():
    env = {"SW_SECRET": VECTOR_KEY}
    assert TOLERANCE_S == 300
    assert verify_webhook(SW, vector_headers(), VECTOR_BODY, environ=env, now_s=VECTOR_TS + 300) == VECTOR_ID
    old = refused(SW, vector_headers(), VECTOR_BODY, env, VECTOR_TS + 301)
    assert old.header == "webhook-timestamp" and "301 s old; the tolerance is 300 s" in old.message
    new = refused(SW, vector_headers(), VECTOR_BODY, env, VECTOR_TS - 301)
    assert "301 s in the future" in new.message
    for stamp in ("hello", "1614265330.5", "-1", "٣", "9" * 40):
        bad = {**vector_headers(), "webhook-timestamp": stamp}
        assert refused(SW, bad, VECTOR_BODY, env, VECTOR_TS).header == "webhook-timestamp", stamp


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing):
    headers = {k: v for k, v in vector_headers().items() if k != missing}
    err = refused(SW, headers, VECTOR_BODY, {"SW_SECRET": VECTOR_KEY}, VECTOR_TS)
    assert err.header == missing and f"no {missing} header" in err.message


@pytest.mark.parametrize("signature", ["v1", "v1,", "v1,not base64!", ",,,", "v1,=" * 50, "é"])
def test_malformed_signatures_are_refusals_not_crashes(signature):
    err = refused(SW, vector_headers(signature), VECTOR_BODY, {"SW_SECRET": VECTOR_KEY}, VECTOR_TS)
    assert err.header == "webhook-signature"


def test_the_reference_library_as_sender_and_as_receiver():
    """Deliveries signed by the standardwebhooks package verify here, and ours verify there."""
    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ=="
    now = int(time.time())
    body = '{"order": 7, "note": "ünïcode"}'
    theirs = Webhook(secret).sign("msg_ref", datetime.fromtimestamp(now, UTC), body)
    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(now), "webhook-signature": theirs}
    assert verify_webhook(SW, headers, body.encode(), environ={"SW_SECRET": secret}) == "msg_ref"
    ours = sign_standard(secret, "msg_ref", now, body.encode())
    assert ours == theirs
    Webhook(secret).verify(body, {**headers, "webhook-signature": ours})


def test_rotation_old_and_new_secrets_both_verify():
    old, new = VECTOR_KEY, "whsec_" + "bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
    body = b'{"a": 1}'
    for env_value in (f"{old} {new}", f"{new},{old}", f"  {old}\n{new} "):
        env = {"SW_SECRET": env_value}
        for key in (old, new):
            headers = {
                "webhook-id": "m1",
                "webhook-timestamp": "100",
                "webhook-signature": sign_standard(key, "m1", 100, body),
            }
            assert verify_webhook(SW, headers, body, environ=env, now_s=100) == "m1"
    gh_env = {"GH_SECRET": "old-secret new-secret"}
    for secret in ("old-secret", "new-secret"):
        assert verify_webhook(GH, {"x-hub-signature-256": sign_github(secret, body)}, body, environ=gh_env) is None
    assert (
        refused(GH, {"x-hub-signature-256": sign_github("older", body)}, body, gh_env).header == "X-Hub-Signature-256"
    )


def test_github_signs_the_body_and_names_its_delivery():
    body, env = b'{"action": "opened"}', {"GH_SECRET": "gh-secret-1"}
    headers = {"X-Hub-Signature-256": sign_github(env["GH_SECRET"], body), "X-GitHub-Delivery": "72d3162e-cc78"}
    assert verify_webhook(GH, headers, body, environ=env) == "72d3162e-cc78"
    assert refused(GH, {}, body, env).message.startswith("no X-Hub-Signature-256 header")
    assert "does not match" in refused(GH, headers, body + b" ", env).message
    assert refused(GH, {"x-hub-signature-256": "sha256=é"}, body, env).header == "X-Hub-Signature-256"


def test_githubs_documented_test_values_verify():
    """docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody", payload
    "Hello, World!"; the secret has spaces, so it verifies as a whole beside its parts."""
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign_github("It's a Secret to Everybody", b"Hello, World!") == expected
    env = {"GH_SECRET": "It's a Secret to Everybody"}
    assert verify_webhook(GH, {"x-hub-signature-256": expected}, b"Hello, World!", environ=env) is None


def test_bearer_compares_the_secret():
    env = {"HOOK_TOKEN": "t0ken-a t0ken-b"}
    assert verify_webhook(BEARER, {"authorization": "Bearer t0ken-b"}, b"", environ=env) is None
    assert verify_webhook(BEARER, {"Authorization": "bearer t0ken-a"}, b"", environ=env) is None
    for value in ("", "Bearer", "Basic t0ken-a", "Bearer t0ken", "Bearer t0ken-a-and-more", "Bearer é"):
        assert refused(BEARER, {"authorization": value}, b"", env).header == "Authorization", value


def test_a_secret_missing_from_the_environment_refuses_everything():
    err = refused(SW, vector_headers(), VECTOR_BODY, {}, VECTOR_TS)
    assert "no secret in SW_SECRET" in err.message
    assert (
        "no secret in HOOK_TOKEN" in refused(BEARER, {"authorization": "Bearer "}, b"", {"HOOK_TOKEN": " , "}).message
    )
    bad_key = refused(SW, vector_headers(), VECTOR_BODY, {"SW_SECRET": "whsec_not*base64"}, VECTOR_TS)
    assert "a secret in SW_SECRET is not a Standard Webhooks key" in bad_key.message


def test_refusals_never_show_a_secret():
    env = {"GH_SECRET": "hunter2-secret", "HOOK_TOKEN": "hunter2-secret", "SW_SECRET": VECTOR_KEY}
    errors = [
        refused(GH, {"x-hub-signature-256": "sha256=00"}, b"{}", env),
        refused(BEARER, {"authorization": "Bearer nope"}, b"{}", env),
        refused(SW, vector_headers(VECTOR_BAD_SIG), VECTOR_BODY, env, VECTOR_TS),
    ]
    for err in errors:
        assert "hunter2" not in str(err) and VECTOR_KEY[6:] not in str(err) and "nope" not in str(err)
