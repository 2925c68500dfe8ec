"""Running the real Claude Code CLI headless in tests, against the scripted stand-in and a golem daemon.

A :class:`ClaudeProject` is a throw-away project folder plus an isolated Claude Code config dir:

- ``.claude/agents/<role>.md`` custom agents whose body carries ``ROLE:<role>`` (what the stand-in
  in ``fake_anthropic.py`` keys its script on);
- ``.claude/settings.json`` wiring every hook event to ``golem-mcp hook`` (so the daemon sees
  SessionStart, PreToolUse with tool_use_id, SubagentStart with agent_type, ...);
- an MCP config file for ``--mcp-config`` that launches ``golem-mcp stdio`` (the bridge);
- the environment: ``ANTHROPIC_BASE_URL`` at the stand-in, OTLP/HTTP JSON export to the daemon
  (with its token in ``OTEL_EXPORTER_OTLP_HEADERS``, as ``golem-mcp install`` writes it),
  ``ENABLE_TOOL_SEARCH=false`` (Claude Code 2.1.328 defers MCP tools behind ToolSearch otherwise),
  HOME and ``CLAUDE_CONFIG_DIR`` in the tmp folder so nothing of the real user is read or written.

Example::

    proj = ClaudeProject(tmp_path / "p", claude_bin, api.url, daemon_url, golem_home)
    proj.add_agent("reviewer", model="sonnet")
    result = proj.run("Run the workflow. WF:wf-1", allowed_tools=["mcp__golem", "Agent"])
    result["session_id"], result["total_cost_usd"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# the events `golem-mcp install` registers (and the same matchers), so the CLI runs as installed
from golem_mcp.kit.install import HOOK_EVENTS, TOOL_EVENTS


class ClaudeProject:
    def __init__(self, root: Path, claude_bin: Path, api_url: str, daemon_url: str, golem_home: Path) -> None:
        self.root = root
        self.claude_bin = claude_bin
        self.api_url = api_url
        self.daemon_url = daemon_url
        self.golem_home = golem_home
        self.home = root / "home"
        self.config_dir = self.home / ".claude"
        self.workdir = root / "work"
        for d in (self.home, self.config_dir, self.workdir / ".claude" / "agents"):
            d.mkdir(parents=True, exist_ok=True)
        (self.workdir / "README.md").write_text("# demo project\n")
        hook_cmd = f"{sys.executable} -m golem_mcp hook"
        settings = {"hooks": {ev: [{"matcher": "*", "hooks": [{"type": "command", "command": hook_cmd}]}]
                              if ev in TOOL_EVENTS
                              else [{"hooks": [{"type": "command", "command": hook_cmd}]}]
                              for ev in HOOK_EVENTS}}
        (self.workdir / ".claude" / "settings.json").write_text(json.dumps(settings, indent=1))
        self.mcp_config = root / "mcp.json"
        self.mcp_config.write_text(json.dumps({"mcpServers": {"golem": {
            "type": "stdio", "command": sys.executable, "args": ["-m", "golem_mcp", "stdio"],
            "env": {"GOLEM_HOME": str(golem_home), "GOLEM_URL": daemon_url}}}}))

    @property
    def projects_dir(self) -> Path:
        return self.config_dir / "projects"

    def add_agent(self, role: str, model: str = "sonnet", description: str | None = None) -> None:
        """A custom agent whose prompt carries the stand-in's role marker; it inherits all tools (MCP too)."""
        (self.workdir / ".claude" / "agents" / f"{role}.md").write_text(
            f"---\nname: {role}\ndescription: {description or f'The {role} stage of the workflow.'}\n"
            f"model: {model}\n---\nROLE:{role}\nYou are the {role}.\n")

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        return {
            **keep,
            "HOME": str(self.home), "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "GOLEM_HOME": str(self.golem_home), "GOLEM_URL": self.daemon_url,
            "ANTHROPIC_BASE_URL": self.api_url, "ANTHROPIC_API_KEY": "sk-test-not-a-real-key",
            "ENABLE_TOOL_SEARCH": "false",
            "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_ERROR_REPORTING": "1", "MCP_TIMEOUT": "60000", "MCP_TOOL_TIMEOUT": "120000",
            "CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_ENDPOINT": self.daemon_url,
            # what `golem-mcp install` writes: the daemon refuses OTLP without its token
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {self.token()}",
            "OTEL_LOGS_EXPORT_INTERVAL": "500", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }

    def token(self) -> str:
        """The daemon's token, from its state file in the data folder (as the hook and bridge read it)."""
        return str(json.loads((self.golem_home / "daemon.json").read_text())["token"])

    def run(self, prompt: str, allowed_tools: list[str], timeout: float = 300,
            extra_args: list[str] | None = None) -> dict[str, Any]:
        """``claude -p PROMPT --output-format json``; returns the parsed result (raises with the output on failure)."""
        args = [str(self.claude_bin), "-p", prompt, "--output-format", "json", "--mcp-config", str(self.mcp_config),
                "--strict-mcp-config", "--allowedTools", " ".join(allowed_tools), *(extra_args or [])]
        p = subprocess.run(args, cwd=self.workdir, env=self.env(), capture_output=True, text=True, timeout=timeout)
        try:
            result = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"claude exited {p.returncode} without a JSON result:\nstdout: {p.stdout[-3000:]}\n"
                                 f"stderr: {p.stderr[-3000:]}") from None
        result["_returncode"] = p.returncode
        result["_stderr"] = p.stderr[-3000:]
        return result
