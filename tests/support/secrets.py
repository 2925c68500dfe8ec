"""Secrets of every kind golem-mcp redacts, as they show up in commands, headers and errors.

Each is fake but has the real shape, and carries a marker (``s3cr3t`` plus a number) so that a test
can scan a whole store, log or spool for any trace of it. Shared by the unit tests of the rule
(``test_redaction.py``) and the end-to-end test that sends all of them through every path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Secret:
    kind: str
    text: str      # where it appears: a command, a header, an error line
    secret: str    # what must never be stored
    redacted: str  # what redact(text) gives


PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAs3cr3t22FAKEFAKEFAKEFAKEFAKEFAKE\n"
       "q1w2e3r4t5y6u7i8o9p0FAKEFAKEFAKE==\n-----END RSA PRIVATE KEY-----")

# The 18 kinds of issue 9, then the generic assignments.
KINDS = [
    Secret("anthropic", "echo sk-ant-api03-s3cr3t01FAKEaaaaaaaaaaaaaaaaaaaaaa | claude setup-token",
           "s3cr3t01", "echo [REDACTED] | claude setup-token"),
    Secret("aws_access_key_id", "aws configure set aws_access_key_id AKIAS3CR3T02FAKE0000",
           "S3CR3T02", "aws configure set aws_access_key_id [REDACTED]"),
    Secret("aws_secret_access_key", "aws_secret_access_key = s3cr3t03wJalrXUtnFEMIK7MDENGbPxRfiCY",
           "s3cr3t03", "aws_secret_access_key = [REDACTED]"),
    Secret("github_classic", "git clone https://ghp_s3cr3t04FAKEaaaaaaaaaaaaaaaaaaaaaaaa@github.com/o/r.git",
           "s3cr3t04", "git clone https://[REDACTED]@github.com/o/r.git"),
    Secret("github_oauth", 'echo "gho_s3cr3t05FAKEaaaaaaaaaaaaaaaaaaaaaaaa" | gh auth login --with-token',
           "s3cr3t05", 'echo "[REDACTED]" | gh auth login --with-token'),
    Secret("github_fine_grained", "echo github_pat_11ABCDEFG0s3cr3t06_FAKEaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa > .pat",
           "s3cr3t06", "echo [REDACTED] > .pat"),
    Secret("gitlab", 'curl --header "PRIVATE-TOKEN: glpat-s3cr3t07FAKEaaaaaaaa" https://gitlab.example.com/api/v4/projects',
           "s3cr3t07", 'curl --header "PRIVATE-TOKEN: [REDACTED]" https://gitlab.example.com/api/v4/projects'),
    Secret("stripe_secret", "curl https://api.stripe.com/v1/charges -u sk_live_s3cr3t08FAKEaaaaaaaaaa:",
           "s3cr3t08", "curl https://api.stripe.com/v1/charges -u [REDACTED]"),
    Secret("stripe_restricted", "STRIPE_RESTRICTED=rk_live_s3cr3t09FAKEaaaaaaaa npm start",
           "s3cr3t09", "STRIPE_RESTRICTED=[REDACTED] npm start"),
    Secret("npm", "npm config set //registry.npmjs.org/:_authToken=npm_s3cr3t10FAKEaaaaaaaaaaaaaaaaaaaaaaaa",
           "s3cr3t10", "npm config set //registry.npmjs.org/:_authToken=[REDACTED]"),
    Secret("huggingface", "python -c \"login('hf_s3cr3t11FAKEaaaaaaaaaaaaaaaaaaaaaa')\"",
           "s3cr3t11", "python -c \"login('[REDACTED]')\""),
    Secret("authorization_bearer", 'curl -H "Authorization: Bearer s3cr3t12.opaque-token" https://api.example.com/me',
           "s3cr3t12", 'curl -H "Authorization: Bearer [REDACTED]" https://api.example.com/me'),
    Secret("authorization_basic", "curl -H 'Authorization: Basic czNjcjN0MTM6cGFzcw==' https://api.example.com",
           "czNjcjN0MTM6cGFzcw", "curl -H 'Authorization: Basic [REDACTED]' https://api.example.com"),
    Secret("curl_user", "curl -u deploy:s3cr3t14 https://ci.example.com/api/build",
           "s3cr3t14", "curl -u [REDACTED] https://ci.example.com/api/build"),
    Secret("mysql_password", "mysql -h db -u root -ps3cr3t15 app && mysql -u root -p s3cr3t16 app "
           "&& mysqldump --password=s3cr3t17 app",
           "s3cr3t1", "mysql -h db -u root -p[REDACTED] app && mysql -u root -p [REDACTED] app "
           "&& mysqldump --password=[REDACTED] app"),
    Secret("cookie", "curl -H 'Cookie: session=s3cr3t18; theme=dark' https://app.example.com && "
           "printf 'Set-Cookie: sid=s3cr3t19; Path=/; HttpOnly'",
           "s3cr3t1", "curl -H 'Cookie: [REDACTED]' https://app.example.com && printf 'Set-Cookie: [REDACTED]'"),
    Secret("x_api_key", 'curl -H "x-api-key: s3cr3t20" https://api.anthropic.com/v1/models',
           "s3cr3t20", 'curl -H "x-api-key: [REDACTED]" https://api.anthropic.com/v1/models'),
    Secret("url_credentials", "psql postgres://app:s3cr3t21@db.internal:5432/app",
           "s3cr3t21", "psql postgres://app:[REDACTED]@db.internal:5432/app"),
    Secret("pem_private_key", f"cat > id_rsa <<EOF\n{PEM}\nEOF",
           "s3cr3t22", "cat > id_rsa <<EOF\n-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----\nEOF"),
]

GENERIC = [
    Secret("KEY=", "KEY=s3cr3t23 ./deploy.sh", "s3cr3t23", "KEY=[REDACTED] ./deploy.sh"),
    Secret("API_KEY=", "export API_KEY=s3cr3t24", "s3cr3t24", "export API_KEY=[REDACTED]"),
    Secret("GITHUB_TOKEN=", "GITHUB_TOKEN=s3cr3t25 gh release create v1", "s3cr3t25",
           "GITHUB_TOKEN=[REDACTED] gh release create v1"),
    Secret("DB_PASSWORD=", "export DB_PASSWORD='s3cr3t26 with spaces'", "s3cr3t26",
           "export DB_PASSWORD='[REDACTED]'"),
    Secret("SECRET=", "SECRET=s3cr3t27 TOKEN=s3cr3t28 PASSWORD=s3cr3t29 make",
           "s3cr3t2", "SECRET=[REDACTED] TOKEN=[REDACTED] PASSWORD=[REDACTED] make"),
    Secret("json_password", '{"user": "bob", "password": "s3cr3t30", "input_tokens": 12}', "s3cr3t30",
           '{"user": "bob", "password": "[REDACTED]", "input_tokens": 12}'),
    Secret("yaml_client_secret", "client_secret: s3cr3t31\nclient_id: app", "s3cr3t31",
           "client_secret: [REDACTED]\nclient_id: app"),
    Secret("--token", "vault login --token s3cr3t32 -method=token", "s3cr3t32",
           "vault login --token [REDACTED] -method=token"),
    Secret("query_access_token", "curl 'https://api.example.com/v1/items?access_token=s3cr3t33&page=2'",
           "s3cr3t33", "curl 'https://api.example.com/v1/items?access_token=[REDACTED]&page=2'"),
]

ALL = KINDS + GENERIC

# Texts that must come out unchanged.
KEPT = [
    "mkdir -p /tmp/build && ssh -p 2222 host && docker run -p 8080:80 -u 1000:1000 img",
    "git push -u origin main && git checkout -b feature/tokens && sort -u words.txt",
    "git show 3f2a9c1d4e5b6a7980f1e2d3c4b5a69788796a5b && git log --oneline 3f2a9c1",
    "max_tokens=4096 input_tokens: 12 cache_read_tokens=5",
    '{"input_tokens": 100, "cache_read_tokens": 5, "token_count": 3, "total_tokens": 108}',
    "the token expired; press any key to continue; all tests pass",
    "src/auth/token_store.py:12: error: bad token",
    "PWD=/home/dev OLDPWD=/tmp",
    "https://github.com/org/repo.git, git@github.com:org/repo.git, https://git@host.example/x",
    "tokenizer=bert-base-uncased",
    "session 4f1c2a0e-1111-2222-3333-444455556666 toolu_01ABCDEFGHJKLMNOPQRSTUVWX req_011CA1B2C3D4E5F6G7H8",
    "Basic usage: see the Bearer authentication docs",
    "docker login --password-stdin -u bob registry.example.com",
    "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }} gh pr list && echo $API_KEY",
    "task-sk-1 asked for 3 retries",
    "npm install && pip install huggingface_hub",
    "[REDACTED] stays [REDACTED]",
]
