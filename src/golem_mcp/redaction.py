"""The one redaction rule: secrets out of every text golem-mcp keeps.

Every text that reaches a table, a log or the hook spool passes through :func:`redact` (a string)
or :func:`redact_value` (a decoded JSON value: strings inside dicts and lists, and the value of any
key that names a secret). The store applies it to every text column of every batch it writes
(:func:`redact_table`), so no ingestion path can forget it; the hook spool, the daemon's log and
the hook client's error log apply it before writing.

What is redacted, kind by kind (``tests/test_redaction.py`` pins each with positive and negative
cases):

- issued token shapes, the whole token: Anthropic ``sk-ant-...`` (and other ``sk-...`` keys), AWS
  access key ids ``AKIA...``/``ASIA...``, GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` and
  ``github_pat_``, GitLab ``glpat-`` (and its other ``gl...-`` tokens), Stripe ``sk_live_``/
  ``rk_live_`` (and ``_test_``, ``whsec_``), npm ``npm_``, Hugging Face ``hf_``, Slack ``xox.-``,
  Google ``AIza...``, JWTs;
- ``Authorization: Bearer|Basic|token ...`` (the scheme is kept), a bare ``Bearer``/``Basic``
  credential of 16 characters or more, ``Cookie:``/``Set-Cookie:`` header values (to the end of
  the header), ``curl -u user:pass`` / ``--user`` (and ``-b`` cookies), ``mysql -pSECRET`` /
  ``-p SECRET`` (also mysqldump, mariadb, sshpass; ``redis-cli -a``), the password of URL
  credentials (``postgres://user:[REDACTED]@host/db``), PEM private key blocks (also cut ones);
- generic assignments whose name names a secret: ``KEY=...``, ``API_KEY=...``, ``GITHUB_TOKEN=...``,
  ``DB_PASSWORD: ...``, ``--password=...``/``--token ...``, ``x-api-key: ...``, JSON/dict forms
  ``"password": "..."``, and in decoded JSON any string under such a key. A name names a secret
  when it contains password/passwd/passphrase/secret/credential/cookie/authorization, api-key/
  private-key/access-key, ``token`` (not ``tokens``/``tokenizer``: ``input_tokens`` is a count), or
  ends in a part ``key``/``pass``/``auth`` (``SSH_KEY``, ``DB_PASS``) or ``_pwd`` (not ``PWD``).

Kept on purpose: the command around a secret (``curl -u [REDACTED] https://...``), references
(``TOKEN=$GITHUB_TOKEN``), numbers under secret-looking keys in JSON (``"token_count": 12``), git
hashes, UUIDs and Claude Code's ids, ``mkdir -p``/``ssh -p 22``/``git push -u origin``/
``docker run -u 1000:1000``, ``file.py:12`` locations, and plain words ("the token expired").

Speed: a text is first checked against :data:`DETECT`, one pattern that matches whenever any rule
could change the text (a superset: tested); most texts fail it and cost one search. The store runs
DETECT vectorised over whole Arrow columns (RE2) and redacts only the cells it flags.

This module is imported by the hook client on its hot path: nothing but ``re`` at import time.
"""

from __future__ import annotations

import bisect
import itertools
import re

# --- prompt and response text -----------------------------------------------------------------------
# The other half of what golem-mcp does not keep: texts a person or the model wrote. Dropped on the way
# in unless the user opted in (``store_prompts``), and always on the way out of the machine (shards).
# OTel attribute keys holding prompt or response text:
OTEL_TEXT_KEYS = frozenset({"prompt", "prompt_text", "response", "user_prompt", "assistant_response",
                            "tool_input", "tool_output", "system_prompt"})
# hook payload keys (with PostToolBatch's calls, which hold tool inputs and responses):
HOOK_TEXT_KEYS = frozenset({"prompt", "last_assistant_message", "tool_response", "tool_input", "message",
                            "compact_summary", "custom_instructions", "task_subject", "task_description",
                            "tool_calls"})

# typing costs milliseconds to import on the hook's hot path; type checkers honour a local TYPE_CHECKING
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _Text = TypeVar("_Text", str, None)

REDACTED = "[REDACTED]"

# Matches whenever some rule below might change a text. Written in the syntax shared by Python's
# re and RE2 (Arrow's regex engine): no lookaround, no backreferences.
DETECT = "|".join((
    r"\bsk-", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}", r"\bgh[pousr]_", r"\bgithub_pat_",
    r"\bgl(?:pat|dt|rt|ptt|soat|cbt|imt|ft|agent|oas)-", r"\b[sr]k_(?:live|test)_", r"\bwhsec_",
    r"\bnpm_", r"\bhf_", r"\bxox[abposr]-", r"\bAIza", r"\beyJ",
    r"-----BEGIN ",
    r"://[^\s/?#]*@",
    r"(?i:bearer|basic\s|authoriz|cookie|passw|passphrase|secret|credential|api.?key|private.?key|access.?key)",
    r"(?i:token)(?:[^a-zA-Z]|$)",
    r"(?:^|[^a-zA-Z0-9])(?i:key|pass|auth)(?:[^a-zA-Z0-9]|$)",
    r"[_.\-](?i:pwd)(?:[^a-zA-Z0-9]|$)",
    r"(?:^|\s)(?:-u|-U|--user|--proxy-user)[\s=]*(?:\"[^\"\n]*:|'[^'\n]*:|[^\s\"':]*:)",
    r"(?i:mysql|mariadb|sshpass|redis-cli)",
    r"(?:^|\s)-b[\s=]",
))
_DETECT = re.compile(DETECT, re.ASCII)  # ASCII \b and \s, as in RE2
# Python's re scans DETECT at ~10 ns a character; one of these substrings (lower-cased) is in every
# text DETECT matches, and they are found much faster, so most texts never reach DETECT at all.
_CLUES = ("key", "token", "pass", "auth", "secret", "cookie", "bearer", "basic", "credential", "pwd",
          "sk-", "akia", "asia", "abia", "acca", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
          "glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glimt-", "glft-", "glagent-", "gloas-",
          "k_live_", "k_test_", "whsec_", "npm_", "hf_", "xox", "aiza", "eyj", "-----begin", "://",
          "-u", "-b", "mysql", "mariadb", "sshpass", "redis-cli")
# on a short text one search for all of them is quicker; on a long one, str.find for each
_CLUE = re.compile("|".join(re.escape(c) for c in _CLUES if c != "-b") + r"|-b[\s=]", re.ASCII)
_SHORT = 256


def _has_clue(low: str) -> bool:
    if len(low) <= _SHORT:
        return _CLUE.search(low) is not None
    return any(c in low for c in _CLUES)


def _may_hold_secret(text: str) -> bool:
    return _has_clue(text.lower()) and _DETECT.search(text) is not None


class _Lazy:
    """A pattern compiled on first use: the hook client imports this module for every event, and
    compiling all the rules costs ~5 ms that most texts (failing DETECT) never need."""

    __slots__ = ("_args", "_rx")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._rx: re.Pattern[str] | None = None

    def _get(self) -> re.Pattern[str]:
        if self._rx is None:
            self._rx = re.compile(*self._args)
        return self._rx

    def search(self, text: str) -> re.Match[str] | None:
        return self._get().search(text)

    def match(self, text: str) -> re.Match[str] | None:
        return self._get().match(text)

    def sub(self, repl: Callable[[re.Match[str]], str] | str, text: str) -> str:
        return self._get().sub(repl, text)


_SECRET_NAME = _Lazy(
    r"passw(?:or)?d|passphrase|secret|credential|cookie|authorization"
    r"|api[_.\- ]?key|private[_.\- ]?key|access[_.\- ]?key"
    r"|token(?![a-z])"
    r"|(?:^|[_.\- ])(?:key|pass|auth)$|[_.\-]pwd$",
    re.IGNORECASE | re.ASCII)
# "token_store.py:12: error" is a file location, not an assignment
_FILE_NAME = _Lazy(
    r"\.(?:py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|rb|java|kt|c|h|cc|cpp|hpp|cs|php|swift|sh|md|txt|json|"
    r"ya?ml|toml|ini|cfg|lock|html|css|sql|log)$", re.IGNORECASE | re.ASCII)


def is_secret_name(name: str, field: bool = False) -> bool:
    """Whether a variable, option, header or JSON key names a secret (``API_KEY``, ``--token``,
    ``x-api-key``, ``db_password``); ``input_tokens``, ``PWD`` and ``auth.py`` do not. As a field
    name (a JSON key, ``key: ...``), ``key`` alone does not (``{"key": "workflow_id", "value": ..}``,
    ``{key: 'bugs'}``); as a variable (``KEY=...``) it does."""
    if field and name.lower() == "key":
        return False
    return bool(_SECRET_NAME.search(name)) and not _FILE_NAME.search(name)


_SCHEME = r"(?:bearer|basic|token|digest|negotiate|ntlm|apikey)[ \t]+"
_SCHEME_RE = _Lazy(_SCHEME, re.IGNORECASE | re.ASCII)
_KW = r"(?:passw|passphrase|secret|token|key|credential|cookie|auth|pwd|pass)"
_DQ = r'"(?:[^"\\\n]|\\.)*"'
_SQ = r"'(?:[^'\\\n]|\\.)*'"

_PEM = _Lazy(
    r"(?P<head>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)"
    r"(?:.*?(?P<tail>-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)|.*)", re.DOTALL | re.ASCII)
_URL_CREDS = _Lazy(
    r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?:(?P<user>[^\s/?#@:'\"\\]*):)?(?P<secret>[^\s/?#@'\"\\]+)@", re.ASCII)
_COOKIE_HEADER = _Lazy(
    r"(?P<pre>(?<![A-Za-z0-9_\-])(?:set-)?cookie[ \t]*:[ \t]*)(?P<value>[^\r\n\"'\\]+)", re.IGNORECASE | re.ASCII)
# "password": "..." in JSON or a dict, also inside JSON kept as a string (\"password\": \"...\")
_QUOTED_ASSIGN = _Lazy(
    r"(?P<pre>(?P<q>\\*[\"'])(?P<name>[A-Za-z0-9_.\- ]*" + _KW + r"[A-Za-z0-9_.\- ]*)(?P=q)[ \t]*[:=][ \t]*)"
    r"(?P<value>" + _DQ + "|" + _SQ + r"|(?P=q).*?(?P=q))", re.IGNORECASE | re.ASCII)
_ASSIGN = _Lazy(
    r"(?<![A-Za-z0-9_.\-])(?P<pre>(?P<name>[A-Za-z0-9_.\-]*" + _KW + r"[A-Za-z0-9_.\-]*)"
    r"(?P<sep>[ \t]*(?::=|[:=])(?!=)[ \t]*))"
    r"(?P<value>" + _DQ + "|" + _SQ + "|(?:" + _SCHEME + r")?[^\s\"'\\&]+)", re.IGNORECASE | re.ASCII)
_OPTION = _Lazy(
    r"(?<![A-Za-z0-9_\-])(?P<pre>(?P<name>--[A-Za-z0-9\-]*" + _KW + r"[A-Za-z0-9\-]*)[ \t]+)"
    r"(?P<value>" + _DQ + "|" + _SQ + r"|[^\s\"'\\\-][^\s\"'\\]*)", re.IGNORECASE | re.ASCII)
_FLAG_ONLY = _Lazy(r"-(?:stdin|file|prompt|env|command|cmd)$", re.IGNORECASE | re.ASCII)
_USER_OPT = _Lazy(
    r"(?<!\S)(?P<pre>(?:-u|-U|--user|--proxy-user)[ \t]*=?[ \t]*)(?!\d+:\d+(?:\s|$))"
    r"(?P<value>\"[^\"\n]*:[^\"\n]*\"|'[^'\n]*:[^'\n]*'|[^\s\"':]*:[^\s\"']*)", re.ASCII)
_SHORT_OPT = _Lazy(
    r"(?P<pre>\b(?:(?i:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mysqlpump|mysqlsh"
    r"|mariadb|mariadb-dump|mariadb-admin|sshpass)\b[^\n|;&]*?(?<!\S)-p"
    r"|(?i:redis-cli)\b[^\n|;&]*?(?<!\S)-a[ \t]+|(?i:curl)\b[^\n|;&]*?(?<!\S)-b[ \t]+)[ \t]*)"
    r"(?P<value>" + _DQ + "|" + _SQ + r"|[^\s\"'\\\-][^\s\"'\\]*)", re.ASCII)
_SHORT_OPT_COMMANDS = ("mysql", "mariadb", "sshpass", "redis-cli", "curl")
_BARE_SCHEME = _Lazy(r"(?P<pre>\b(?:bearer|basic)[ \t]+)(?P<value>[A-Za-z0-9._~+/=\-]{16,})", re.IGNORECASE | re.ASCII)
_TOKENS = _Lazy(
    r"\bsk-ant-[A-Za-z0-9_\-]{16,}|\bsk-[A-Za-z0-9_\-]{20,}"
    r"|\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bgl(?:pat|dt|rt|ptt|soat|cbt|imt|ft|agent|oas)-[A-Za-z0-9_\-]{16,}"
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{16,}"
    r"|\bnpm_[A-Za-z0-9]{30,}|\bhf_[A-Za-z0-9]{30,}|\bxox[abposr]-[A-Za-z0-9\-]{10,}|\bAIza[0-9A-Za-z_\-]{30,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", re.ASCII)


_QUOTE = _Lazy(r"\\*[\"']")


def _mask(value: str) -> str:
    """A secret value redacted: quotes and an auth scheme kept; references and redacted values kept."""
    quoted = _QUOTE.match(value)
    if quoted:
        q = quoted.group(0)
        if len(value) >= 2 * len(q) and value.endswith(q):
            return q + _mask(value[len(q):-len(q)]) + q
    if not value or value.startswith(("$", REDACTED)):
        return value  # a reference ($TOKEN, ${{ secrets.X }}) is not the secret
    m = _SCHEME_RE.match(value)
    if m and value[m.end():].startswith(REDACTED):
        return value
    return (m.group(0) if m else "") + REDACTED


def _named(m: re.Match[str]) -> str:
    if not is_secret_name(m.group("name"), field=":" in m.group("sep")):
        return m.group(0)
    return m.group("pre") + _mask(m.group("value"))


def _named_json(m: re.Match[str]) -> str:
    if not is_secret_name(m.group("name"), field=True):
        return m.group(0)
    return m.group("pre") + _mask(m.group("value"))


def _option(m: re.Match[str]) -> str:
    name = m.group("name")
    if _FLAG_ONLY.search(name) or not is_secret_name(name):
        return m.group(0)
    return m.group("pre") + _mask(m.group("value"))


def _keep_pre(m: re.Match[str]) -> str:
    return m.group("pre") + _mask(m.group("value"))


def _pem(m: re.Match[str]) -> str:
    return m.group("head") + REDACTED + (m.group("tail") or "")


def _url(m: re.Match[str]) -> str:
    user, secret = m.group("user"), m.group("secret")
    if user is None and len(secret) < 20:
        return m.group(0)  # https://git@host: a user name, not a token
    return m.group("pre") + (f"{user}:" if user is not None else "") + REDACTED + "@"


def redact(text: _Text) -> _Text:
    """``text`` with every secret replaced by ``[REDACTED]``, keeping what makes it readable.

    Example: ``redact("curl -u bob:hunter2 https://x")`` is ``"curl -u [REDACTED] https://x"``.
    """
    if not text:
        return text
    if len(text) >= _LONG and "\n" in text:
        # checked line by line in _apply_rules: DETECT over the whole of a long text costs more
        return _apply_rules(text) if _has_clue(text.lower()) else text
    return _apply_rules(text) if _may_hold_secret(text) else text


def _apply_rules(text: str) -> str:
    if "private key" in text.lower():
        text = _PEM.sub(_pem, text)  # the one rule whose secret spans lines
    if len(text) < _LONG or "\n" not in text:
        return _line_rules(text)
    # A long text (a script, a file read, a log) holds secrets on a few lines at most, and the
    # rules cost ~300 ns a character: only lines with a clue that pass DETECT go through them (no
    # rule reaches past the end of a line).
    lines = text.split("\n")
    starts = list(itertools.accumulate((len(x) + 1 for x in lines[:-1]), initial=0))
    low = text.lower()
    candidates: set[int] = set()
    for clue in _CLUES:
        at = low.find(clue)
        while at >= 0:
            candidates.add(bisect.bisect_right(starts, at) - 1)
            at = low.find(clue, at + 1)
    for i in candidates:
        if _DETECT.search(lines[i]):
            lines[i] = _line_rules(lines[i])
    return "\n".join(lines)


_LONG = 1000


def _line_rules(text: str) -> str:
    # each rule runs only when a substring it needs is there (cheap checks that skip most of them)
    low = text.lower()
    out = text
    if "://" in out:
        out = _URL_CREDS.sub(_url, out)
    if "cookie" in low:
        out = _COOKIE_HEADER.sub(_keep_pre, out)
    out = _QUOTED_ASSIGN.sub(_named_json, out)
    out = _ASSIGN.sub(_named, out)
    if "--" in out:
        out = _OPTION.sub(_option, out)
    if "-u" in out or "-U" in out:
        out = _USER_OPT.sub(_keep_pre, out)
    if any(c in low for c in _SHORT_OPT_COMMANDS):
        out = _SHORT_OPT.sub(_keep_pre, out)
    if "bearer" in low or "basic" in low:
        out = _BARE_SCHEME.sub(_keep_pre, out)
    return _TOKENS.sub(REDACTED, out)


_MAX_DEPTH = 64


def redact_value(value: Any, _depth: int = 0, _secret: bool = False) -> Any:
    """A decoded JSON value with :func:`redact` applied to every string (keys included), and every
    string under a key that names a secret (``{"api_key": "..."}``, ``{"cookies": ["..."]}``)
    replaced. Numbers, booleans and nulls stay; a value nested deeper than 64 levels is replaced."""
    if isinstance(value, str):
        return _mask(value) if _secret and value else redact(value)
    if isinstance(value, dict):
        if _depth >= _MAX_DEPTH:
            return REDACTED
        return {redact(k) if isinstance(k, str) else k:
                redact_value(v, _depth + 1, _secret or (isinstance(k, str) and is_secret_name(k, field=True)))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        if _depth >= _MAX_DEPTH:
            return REDACTED
        return [redact_value(v, _depth + 1, _secret) for v in value]
    return value


def redact_json_text(text: str | None) -> str | None:
    """A JSON document (as text) redacted value by value; text that is not JSON is redacted as text."""
    if not text or not _may_hold_secret(text):
        return text
    import orjson

    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return redact(text)
    return orjson.dumps(redact_value(doc), default=str).decode()


# up to this many distinct texts (of at most _FEW_CHARS in all) are checked with Python's DETECT:
# RE2 compiles DETECT at every call, ~0.3 ms, which was most of what a table of a few rows cost (a
# hook payload's, an OTLP body's workflows and links)
_FEW, _FEW_CHARS = 64, 16_384


def _flag_few(distinct: list[Any]) -> Any | None:
    """DETECT over a few texts in Python (the same pattern, ASCII as in RE2), as a boolean array
    like ``pc.match_substring_regex``'s; None when they are too long for it."""
    import pyarrow as pa

    values = [v for d in distinct for v in d.to_pylist()]
    if sum(len(v) for v in values if v is not None) > _FEW_CHARS:
        return None
    return pa.array([None if v is None else _may_hold_secret(v) for v in values], type=pa.bool_())


def redact_table(table: Any, json_columns: frozenset[str] | set[str] = frozenset()) -> tuple[Any, set[str]]:
    """Redact every string column of an Arrow table; returns it and the names of columns changed.

    DETECT runs vectorised (RE2) over each whole column, so a batch without secrets costs one scan
    per column; only flagged cells go through :func:`redact` (or :func:`redact_json_text` for
    ``json_columns``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    changed: set[str] = set()
    # each distinct text once (a batch repeats its resource, session ids and names on every row;
    # finding the distinct values costs a tenth of scanning them), and all columns in one RE2 call
    # (compiling DETECT costs ~0.4 ms a call)
    texts = [i for i, f in enumerate(table.schema) if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    distinct = [pc.unique(table.column(i)).cast(pa.large_string()) for i in texts]
    if not distinct:
        return table, changed
    flagged = _flag_few(distinct) if sum(len(d) for d in distinct) <= _FEW else None
    if flagged is None:
        flagged = pc.match_substring_regex(pa.concat_arrays(distinct), DETECT)
    if not pc.any(flagged).as_py():
        return table, changed
    start = 0
    for i, values in zip(texts, distinct, strict=True):
        hits = flagged.slice(start, len(values))
        start += len(values)
        if not pc.any(hits).as_py():
            continue
        name = table.column_names[i]
        fix = redact_json_text if name in json_columns else redact
        fixed = {v: fix(v) for v in pc.filter(values, hits).to_pylist()}
        fixed = {v: f for v, f in fixed.items() if f != v}
        if fixed:
            col = table.column(i)
            new = [fixed.get(v, v) if v is not None else None for v in col.to_pylist()]
            table = table.set_column(i, name, pa.array(new, type=col.type))
            changed.add(name)
    return table, changed
