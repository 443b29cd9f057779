"""Secrets, whoever echoes them (issue 20): the one redaction function under generated inputs,
and the real CLI against servers and flags that echo what they were given."""

from __future__ import annotations

import base64
import binascii
import io
import re
import string
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner import redaction
from runner.config import given_secrets, load_config
from runner.errors import ChartError, ErrorType, one_line
from runner.redaction import MARK, MIN_CHARS, Secrets, redact, redact_address
from tests.helpers import REPO, run_cli
from tests.userfiles import assert_untouched, plant_user_files, tree_digest

# Realistic secrets: random characters, so no ordinary word of the output is masked with them.
SECRET = "Zq8vR2mXk4TtLw9pN3bYc7Hd"
OTHER = "Pw7hQz93LkRt55xWe2Ym"
ECHO_SERVER = REPO / "tests" / "secret_echo_server.py"
LEAK_CHARS = 8  # this much of a secret in an output counts as a leak (a message cut it before scrubbing)
PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture
def installed() -> Iterator[None]:
    """Tests that install secrets for the process leave none installed after them."""
    yield
    redaction.install(Secrets())


# -- the redaction function, under generated inputs ----------------------------------------------


def _encodings(secret: str) -> list[str]:
    data = secret.encode()
    return [secret, quote(data, safe=""), quote(data, safe="/"), quote_plus(data, safe=""),
            base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode(),
            base64.b64encode(b"svc:" + data).decode(), base64.b64encode(b"ab:" + data).decode()]


def _decodes_to(text: str, secret: str) -> bool:
    """Whether any run of base64 characters in `text`, read from any offset, decodes to bytes
    holding `secret`: an independent check of the base64 scrubbing."""
    data = secret.encode()
    for run in re.findall(r"[A-Za-z0-9+/_-]{4,}", text):
        for offset in range(4):
            chunk = run[offset:]
            chunk = chunk[:len(chunk) // 4 * 4]
            for altchars in (b"+/", b"-_"):
                try:
                    if data in base64.b64decode(chunk, altchars=altchars):
                        return True
                except (binascii.Error, ValueError):
                    pass
    return False


secrets_strategy = st.lists(st.text(min_size=MIN_CHARS, max_size=40), min_size=1, max_size=4)


@st.composite
def text_with_secrets(draw: st.DrawFn) -> tuple[list[str], str]:
    """Secrets, and text that holds them in their common encodings amid arbitrary text."""
    secrets = draw(secrets_strategy)
    pieces = draw(st.lists(st.one_of(st.text(max_size=30),
                                     st.sampled_from(secrets).flatmap(lambda s: st.sampled_from(_encodings(s)))),
                           max_size=12))
    return secrets, "".join(pieces)


@PROPERTY
@given(text_with_secrets())
@example((["a***", "bbbb"], "abbbb"))  # a replacement that joins its neighbours into another secret
def test_scrubbing_never_raises_and_leaves_no_secret_in_any_encoding(case: tuple[list[str], str]) -> None:
    secrets, text = case
    out = Secrets.of(secrets)(text)
    for secret in secrets:
        for form in _encodings(secret):
            assert form not in out
        assert not _decodes_to(out, secret)


@PROPERTY
@given(st.lists(st.text(max_size=MIN_CHARS - 1), max_size=3), st.text())
def test_values_shorter_than_four_characters_are_left_alone(short: list[str], text: str) -> None:
    assert Secrets.of(short)(text) == text


@PROPERTY
@given(text_with_secrets(), st.integers(min_value=0, max_value=300))
def test_one_line_and_chart_errors_never_show_an_installed_secret(installed: None, case: tuple[list[str], str],
                                                                  limit: int) -> None:
    secrets, text = case
    redaction.install(Secrets.of(secrets))
    for out in (one_line(text, limit), ChartError(ErrorType.TOOL_ERROR, text).message):
        for secret in secrets:
            assert secret not in out


@PROPERTY
@given(st.text(string.ascii_uppercase + string.digits, min_size=12, max_size=40),
       st.text(string.ascii_lowercase + " :=,.{}'\"\n\x1b", max_size=80),
       st.text(string.ascii_lowercase + " :=,.{}'\"\n", max_size=400), st.integers(min_value=0, max_value=300))
def test_a_message_cut_short_never_shows_part_of_a_secret(installed: None, secret: str, before: str, after: str,
                                                          limit: int) -> None:
    """Text from outside is scrubbed before it is cut (one_line), so no cut leaves a stretch of a
    secret that scrubbing could no longer recognise (the filler cannot hold one: other letters)."""
    redaction.install(Secrets.of([secret]))
    text = before + secret + after
    for out in (one_line(text, limit), ChartError(ErrorType.TOOL_ERROR, text).message):
        assert not any(secret[i:i + LEAK_CHARS] in out for i in range(len(secret) - LEAK_CHARS + 1))


# Secrets as they appear in commands and URLs: no blank, quote, or character a URL or shell
# reads as structure.
_SAFE = string.ascii_letters + string.digits + "!$*+,-._~%^="
command_secret = st.text(_SAFE, min_size=MIN_CHARS, max_size=30).filter(lambda s: not s.startswith("-"))
_word = st.text(string.ascii_lowercase + string.digits + "-_./", min_size=1, max_size=12)
_TEMPLATES = (
    "{prog} --password {s}", "{prog} --api-key={s}", "{prog} --client-secret {s}", "{prog} --bearer {s}",
    "env WAREHOUSE_PASSWORD={s} {prog}", "{prog} -p{s}", "{prog} -p {s}", "{prog} --token={s}",
    "{prog} postgresql://me:{s}@db.internal:5432/shop", "{prog} --dsn=postgresql://me:{s}@db/shop",
    "env DB_URL=postgresql://u:{s}@h/db {prog}", "{prog} https://{s}@api.example.test/v1",
    "{prog} --header 'Authorization: Bearer {s}'", "{prog} -H 'X-Api-Key: {s}'",
    "{prog} --db-path md:shop?motherduck_token={s}", "{prog} --cb https://h/cb?code={s}&state=x",
    "{prog} --callback 'https://h/cb?sig={s}", "{prog} 'unbalanced --password {s}",
)


@PROPERTY
@given(st.sampled_from(_TEMPLATES), command_secret, _word, st.lists(_word, max_size=4))
def test_credentials_in_generated_commands_are_redacted_and_become_secrets(template: str, secret: str, prog: str,
                                                                             extra: list[str]) -> None:
    if "://{s}@" in template:  # a token in a URL's user place: one of token length (a user name is no secret)
        secret = (secret * redaction.TOKEN_AS_USER)[:max(len(secret), redaction.TOKEN_AS_USER)]
    command = template.format(prog=prog, s=secret) + "".join(f" {word}" for word in extra)
    shown = redact(command)
    assert secret not in shown and MARK in shown
    config = load_config(env={}, cli={"server_command": command})
    echoed = f"error: login as {secret} failed (encoded {quote(secret, safe='')})"
    assert secret not in given_secrets(config, {})(echoed)


def test_a_user_name_alone_is_no_secret_but_a_token_in_its_place_is() -> None:
    # Masking a user name such as `postgres` or `runner` would mask every path holding it.
    for command in ("mcp-alchemy postgresql://postgres@db/shop", "server --dsn=postgresql://runner@h/db"):
        assert redact(command) == command
        assert given_secrets(load_config(env={}, cli={"server_command": command}), {})("runner-output/x") == \
            "runner-output/x"
    token = "ghp_" + "A1b2C3d4" * 4
    assert token not in redact(f"server https://{token}@api.example.test/v1")


@PROPERTY
@given(command_secret, command_secret, st.sampled_from(("tcp", "tls", "http", "https")))
def test_credentials_in_generated_urls_are_redacted(password: str, token: str, scheme: str) -> None:
    url = f"{scheme}://svc:{password}@host.test:8786/mcp?token={token}&sig={token}&page=2"
    shown = redact(url)
    assert password not in shown and token not in shown and shown.endswith("&page=2")
    config = load_config(env={}, cli={"server_url": url if scheme.startswith("http") else None,
                                       "dask_scheduler": url})
    secrets = given_secrets(config, {})
    basic = base64.b64encode(f"svc:{password}".encode()).decode()
    out = secrets(f"HTTP Request: POST {url} Authorization: Basic {basic}")
    assert password not in out and token not in out and not _decodes_to(out, password)
    bare = f"svc:{password}@host.test:8786"  # a Dask address may come without its scheme
    assert password not in redact_address(bare)
    assert password not in given_secrets(load_config(env={}, cli={"dask_scheduler": bare}), {})(f"at {bare}")


@PROPERTY
@given(st.text(min_size=MIN_CHARS, max_size=40).filter(lambda s: s == s.strip() and not {"\x00", "\n"} & set(s)),
       st.text(max_size=40))
def test_every_kind_of_given_secret_is_scrubbed(value: str, around: str) -> None:
    """Server env values (given, inherited by name and by glob), headers after ${VAR}
    expansion, and the API key (as the configuration keeps them: stripped, one line)."""
    environ = {"WAREHOUSE_USER_PASSWORD": value, "VAULT_TOKEN": value, "OTHER": "not given"}
    for cli in ({"server_env": (f"DB_PASSWORD={value}",)}, {"server_env": ("WAREHOUSE_*",)},
                {"server_env": ("VAULT_TOKEN",)}, {"server_headers": ("Authorization: Bearer ${VAULT_TOKEN}",)},
                {"anthropic_api_key": value}):
        config = load_config(env={}, cli=cli)
        assert value not in given_secrets(config, environ)(around + value + around)


def test_the_old_server_command_cases_still_read_the_same() -> None:
    """A server command is shown with only its credentials hidden (tests/test_config.py has more)."""
    assert redact("env DB_URL=postgresql://u:hunter22@h/db srv") == "env DB_URL=postgresql://***@h/db srv"
    assert redact("srv --dsn=postgresql://u:hunter22@h/db") == "srv --dsn=postgresql://***@h/db"
    assert redact("srv --header 'Authorization: Bearer abc123xyz'") == "srv --header 'Authorization: ***'"
    assert redact("srv --db '/data/my shop.db' --verbose") == "srv --db '/data/my shop.db' --verbose"


def test_a_secret_split_across_writes_never_reaches_the_file(installed: None) -> None:
    text = f"first line\nsecret {SECRET} in one\nhalf {SECRET} and the rest\nline\nbreak-secret"
    for secrets in ([SECRET], [SECRET, "line\nbreak-secret"]):  # the second spans lines
        redaction.install(Secrets.of(secrets))
        target = io.StringIO()
        writer = redaction.ScrubbingWriter(target)
        for i in range(0, len(text), 7):
            writer.write(text[i:i + 7])
        writer.close()
        written = target.getvalue()
        assert not any(secret in written or secret[:LEAK_CHARS] in written for secret in secrets)
        assert written.startswith("first line\nsecret ***")
    redaction.install(Secrets.of([SECRET]))
    target = io.StringIO()
    writer = redaction.ScrubbingWriter(target)
    writer.write(text[:40])
    assert target.getvalue() == "first line\n"  # whole lines go out at once, an open one waits
    writer.write(text[40:])
    writer.close()
    assert target.getvalue() == "first line\nsecret *** in one\nhalf *** and the rest\nline\nbreak-secret"


# -- through the real CLI ------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _pptx_text(data: bytes) -> str:
    from pptx import Presentation

    deck = Presentation(io.BytesIO(data))
    return " ".join(shape.text_frame.text for slide in deck.slides for shape in slide.shapes if shape.has_text_frame)


def _readable(path: Path) -> str:
    """A file's bytes as text, plus the text of a deck (PDF streams are compressed)."""
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    if data.startswith(b"%PDF"):
        text += _pdf_text(data)
    elif data.startswith(b"PK") and b"ppt/" in data:
        text += _pptx_text(data)
    elif data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text += "".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())
    return text


def _leaks(secret: str, texts: dict[str, str]) -> list[str]:
    needles = [secret, secret[:LEAK_CHARS], secret[-LEAK_CHARS:], quote(secret, safe=""),
               base64.b64encode(f"svc:{secret}".encode()).decode()]
    return [name for name, text in texts.items() if any(needle in text for needle in needles)]


def _outputs(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): _readable(path) for path in sorted(root.rglob("*"))
            if path.is_file() and not path.is_symlink()}


@pytest.mark.parametrize("given_as", ["NAME=VALUE", "inherited by glob"])
def test_a_secret_a_stdio_server_echoes_is_in_no_output(tmp_path: Path, demo_tokens: list[str],
                                                       given_as: str) -> None:
    """The server quotes the secret in a tool error, in a non-data answer (a preview of which
    the error quotes) and on its stderr: nothing the run writes shows it, in any form."""
    plant_user_files(tmp_path)
    before = tree_digest(tmp_path, (tmp_path / "out",))
    env_flag, env = (f"WAREHOUSE_PASSWORD={SECRET}", {}) if given_as == "NAME=VALUE" else (
        "WAREHOUSE_*", {"WAREHOUSE_PASSWORD": SECRET})
    junit = tmp_path / "out" / "junit.xml"
    result = run_cli(["--server-command", f"{sys.executable} {ECHO_SERVER} WAREHOUSE_PASSWORD",
                      "--server-env", env_flag, "--merchant", demo_tokens[0], "--csv", "--junit-xml", str(junit),
                      "--verbose"], tmp_path, env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.report is not None and result.report_path is not None
    failed = {c["chart_id"]: c for c in result.report["charts"] if c["status"] == "failed"}
    assert set(failed) == {"aov_by_month", "aov_by_product_type"}
    assert f"password {MARK} (url {MARK}" in failed["aov_by_month"]["error"]  # it was there, and is scrubbed
    assert {d["status"] for d in result.report["decks"]} == {"partial"}  # with the failed charts' slides
    run_dir = result.report_path.parent
    server_log = (run_dir / "server-stderr.log").read_text()
    assert f"login refused for password {MARK}" in server_log
    outputs = _outputs(tmp_path / "out")
    assert any(name.endswith(".pdf") for name in outputs) and any(name.endswith(".pptx") for name in outputs)
    assert any(".cache" in name for name in outputs) and "junit.xml" in outputs
    deck = next(text for name, text in outputs.items() if name.endswith("business-review.pptx"))
    assert "Not available for this period" in deck and MARK not in deck  # the error stays in the report
    assert not _leaks(SECRET, {**outputs, "stdout": result.stdout, "stderr": result.stderr})
    assert_untouched(before, tree_digest(tmp_path, (tmp_path / "out",)))


def test_verbose_http_logs_show_no_password_nor_token(tmp_path: Path, demo_url: str, demo_tokens: list[str]) -> None:
    url = demo_url.replace("http://", f"http://svc:{SECRET}@") + f"?token={OTHER}&sig={OTHER[::-1]}"
    result = run_cli(["--server-url", url, "--merchant", demo_tokens[0], "--charts", "aov_by_month",
                      "--deck", "none", "--verbose"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HTTP Request: POST http://***@" in result.stderr  # httpx's line is there, scrubbed
    texts = {**_outputs(tmp_path / "out"), "stdout": result.stdout, "stderr": result.stderr}
    for secret in (SECRET, OTHER, OTHER[::-1]):
        assert not _leaks(secret, texts), secret


@pytest.mark.parametrize("command", [
    "env DB_URL=postgresql://u:{s}@h/db {server} DB_URL",
    "{server} DB_URL --dsn=postgresql://u:{s}@h/db --header 'Authorization: Bearer {s}'",
])
def test_urls_and_headers_in_a_server_command_are_scrubbed_not_recursed(tmp_path: Path, demo_tokens: list[str],
                                                                      command: str) -> None:
    server = f"{sys.executable} {ECHO_SERVER}"
    result = run_cli(["--server-command", command.format(s=SECRET, server=server), "--server-env",
                      f"DB_URL=postgresql://u:{SECRET}@h/db", "--merchant", demo_tokens[0],
                      "--charts", "aov_by_month,orders_by_product_type", "--deck", "none"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "RecursionError" not in result.stderr and result.report is not None
    assert "postgresql://***@h/db" in result.report["config"]["server_command"]["value"]
    texts = {**_outputs(tmp_path / "out"), "stdout": result.stdout, "stderr": result.stderr}
    assert not _leaks(SECRET, texts)


def test_an_unparseable_server_command_is_one_redacted_line(tmp_path: Path) -> None:
    result = run_cli(["--server-command", f"srv --dsn=postgresql://u:{SECRET}@h/db 'unbalanced --password {OTHER}"],
                     tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "cannot be parsed" in line and "--password ***" in line and "postgresql://***@h/db" in line
    assert SECRET not in line and OTHER not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", [f"tcp://svc:{SECRET}@bad host:8786", f"tcp://sched.test:87x6?token={SECRET}",
                                     f"svc:{SECRET}@sched.test:8786"])
def test_a_malformed_dask_address_is_one_redacted_line_with_no_client_made(tmp_path: Path, address: str) -> None:
    pytest.importorskip("distributed")
    result = run_cli(["--executor", "dask", "--dask-scheduler", address, "--merchant", "LIICIEWKV6BK"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()  # no traceback of a half-made Client's finalizer either
    assert line.startswith("error: --dask-scheduler '") and "***" in line and SECRET not in line
    assert not [path for path in (tmp_path / "out").glob("*") if path.name != ".cache"], "no run folder"
