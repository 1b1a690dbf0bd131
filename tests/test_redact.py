"""No secrets in output: URLs are shown with their passwords masked (broker/redact.py) wherever knflow prints
or logs one: the `knflow dev` banner, store, blob, sink and settings errors, `repr(Settings())`, log lines."""

from __future__ import annotations

import secrets

import json

import pytest
import structlog

from broker.errors import KnflowError
from broker.redact import mask_url, redact
from broker.sinks import HttpTarget, make_target
from functions.blobs import BlobError, BlobStore
from knflow.cli import configure_logging, main
from knflow.settings import Settings, SettingsInvalid
from router.store import open_store
from tests.processes import Process, free_port

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("mongodb://app:s3cret@mongo:27017/knflow", "mongodb://app:****@mongo:27017/knflow"),
        (
            "mongodb+srv://app:p%40ss@cluster0.example.net/db?retryWrites=true",
            "mongodb+srv://app:****@cluster0.example.net/db?retryWrites=true",
        ),
        ("mongodb://app:p@ss@h1:1,h2:2/db", "mongodb://app:****@h1:1,h2:2/db"),  # an unescaped '@' in the password
        ("nats://TOKEN123@nats:4222", "nats://****@nats:4222"),  # a lone user part is a token
        ("redis://:pw@redis:6379/0", "redis://:****@redis:6379/0"),
        ("https://api.example.com/v1?api_key=abc&page=2", "https://api.example.com/v1?api_key=****&page=2"),
        (
            "s3://bucket/p?X-Amz-Signature=ff&X-Amz-Credential=AK",
            "s3://bucket/p?X-Amz-Signature=****&X-Amz-Credential=****",
        ),
        (
            "mongodb://h/db?authSource=admin&tlsCertificateKeyFilePassword=x",
            "mongodb://h/db?authSource=admin&tlsCertificateKeyFilePassword=****",
        ),
        ("sqlite:///knflow.db", "sqlite:///knflow.db"),
        ("http://[::1]:8080/x#frag", "http://[::1]:8080/x#frag"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_redact_masks_every_url_in_a_text_and_leaves_the_rest():
    text = f"cannot reach mongodb://app:{SECRET}@db/x, nor 'nats://u:{SECRET}@n:4222'. Retry."
    assert redact(text) == "cannot reach mongodb://app:****@db/x, nor 'nats://u:****@n:4222'. Retry."
    assert redact("plain text: no address") == "plain text: no address"


def test_settings_repr_masks_urls_and_hides_secrets(monkeypatch):
    monkeypatch.setenv("KNFLOW_STORE_URL", f"mongodb://app:{SECRET}@mongo/knflow")
    monkeypatch.setenv("KNFLOW_NATS_URL", f"nats://knflow:{SECRET}@nats:4222")
    monkeypatch.setenv("KNFLOW_WEBHOOK_SECRET", SECRET)
    settings = Settings()
    for shown in (repr(settings), str(settings)):
        assert SECRET not in shown
        assert "mongodb://app:****@mongo/knflow" in shown and "webhook_secret='****'" in shown
    assert settings.store == f"mongodb://app:{SECRET}@mongo/knflow"  # the value itself is untouched


def test_a_bad_setting_names_the_variable_with_the_value_masked(monkeypatch):
    monkeypatch.setenv("KNFLOW_SWEEP_INTERVAL_S", f"mongodb://app:{SECRET}@x")
    with pytest.raises(SettingsInvalid) as err:
        Settings()
    assert SECRET not in str(err.value)
    assert "KNFLOW_SWEEP_INTERVAL_S has value 'mongodb://app:****@x'" in str(err.value)
    assert err.value.variables == ["KNFLOW_SWEEP_INTERVAL_S"] and isinstance(err.value, KnflowError)


def test_store_errors_mask_the_url():
    with pytest.raises(KnflowError) as err:
        open_store(f"postgres://app:{SECRET}@db/knflow")
    assert str(err.value).startswith("store URL 'postgres://app:****@db/knflow' is not supported")
    assert err.value.fields["url"] == "postgres://app:****@db/knflow"
    with pytest.raises(KnflowError) as err:
        open_store(f"mongodb://app:{SECRET}@db:notaport/knflow")
    assert "is not a usable MongoDB URL" in str(err.value) and SECRET not in str(err.value)


def test_blob_errors_and_repr_mask_the_store_url():
    store = BlobStore(f"memory://app:{SECRET}@blobs/x")
    assert SECRET not in repr(store)
    err = BlobError(f"blob {store.url_for('k')!r} does not exist", url=store.url_for("k"))
    assert SECRET not in str(err) and SECRET not in str(err.url) and "app:****@blobs" in str(err)


async def test_sink_errors_and_dead_letter_destinations_mask_the_url():
    import aiohttp

    with pytest.raises(KnflowError) as err:
        make_target(f"ftp://u:{SECRET}@h/x", None, 1.0)
    assert SECRET not in str(err.value) and SECRET not in str(err.value.fields)
    async with aiohttp.ClientSession() as session:
        port = free_port()  # nothing listens there: the delivery fails, as a stopped function's would
        target = HttpTarget(f"http://fn:{SECRET}@127.0.0.1:{port}/", session, 1.0)
        outcome = await target.deliver(_event())
    assert target.destination == f"http://fn:****@127.0.0.1:{port}/"
    assert SECRET not in str(outcome.error_body) and "dispatch error: POST http://fn:****@" in str(outcome.error_body)


def _event():
    from broker import events

    return events.make_event({"type": "t", "source": "/s", "datacontenttype": events.JSON}, {})


def test_log_lines_mask_urls(capsys):
    configure_logging(0, json_logs=True)
    try:
        structlog.get_logger("t").warning("nats connection error", url=f"nats://u:{SECRET}@n:4222", n=1)
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["url"] == "nats://u:****@n:4222" and line["n"] == 1


def test_cli_errors_mask_urls(capsys):
    assert main(["runs", "list", "--store", f"redis://app:{SECRET}@cache/0"]) == 1
    err = capsys.readouterr().err
    assert SECRET not in err and "redis://app:****@cache/0" in err


def test_the_dev_banner_masks_the_store_password(tmp_path, mongo_server):
    """A real `knflow dev` with a MongoDB store URL that holds a password: the banner names the store, masked.
    (nx-27017 takes no credentials, so no pipeline file is given and the result key comes from the setting: the
    banner comes before the first query.)"""
    port = free_port()
    host = mongo_server.url.split("://", 1)[1].split("/", 1)[0]
    store = f"mongodb://app:{SECRET}@{host}/knflow_banner?directConnection=true&serverSelectionTimeoutMS=60000"
    env = {"KNFLOW_NATS_URL": "", "KNFLOW_MONGODB_URL": "", "KNFLOW_RESULT_KEY": secrets.token_hex(32)}
    dev = Process(
        ["dev", "--memory", "--port", str(port), "--store", store], tmp_path / "dev.log", port, env, cwd=tmp_path
    )
    dev.start(timeout_s=60)
    try:
        out = dev.output()
    finally:
        dev.stop()
    assert f"store mongodb://app:****@{host}/knflow_banner?directConnection=true" in out, out
    assert SECRET not in dev.output()
