"""README.md's configuration reference against the option tables vcgate
prints with -P: every option the binary accepts is documented under its
section, nothing documented is unknown to the binary, and the defaults
written in the README are the binary's defaults."""

import os
import re

import harness as H

README = os.path.join(H.TOP, "README.md")

# README heading -> the name -P takes.
SECTIONS = {
    "### `core`": "core",
    "### `transports`: `websocket`": "websocket",
    "### `transports`: `webtransport`": "webtransport",
    "### `bus`: `nats`": "nats",
}

# Defaults the README states in words because they depend on the install
# or the worker, or that the plugin applies when the list is empty (-P
# prints the empty list): checked by name only.
DESCRIBED = {("core", "plugin_dir"), ("nats", "connection_name"), ("nats", "servers"),
             ("websocket", "webroot")}


def readme_tables():
    """{section: {option: default text}} from the README's option tables."""
    out, cur = {}, None
    with open(README, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                cur = SECTIONS.get(line.strip())
                if cur:
                    out[cur] = {}
                continue
            if cur is None or not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            default = cells[1]
            # "`user`, `password` / `token`" documents several options at once.
            for name in re.findall(r"`([a-z_0-9]+)`", cells[0]):
                out[cur][name] = default
    return out


def binary_table(section):
    """{option: default text} from `vcgate -P section`."""
    cp = H.run_vcgate(["-P", section])
    assert cp.returncode == 0, (section, cp.returncode, cp.stderr)
    opts = {}
    for line in cp.stdout.splitlines():
        m = re.match(r"  ([a-z_0-9]+) = (.*?);\s+#", line)
        if m and m.group(1) != "plugin":
            opts[m.group(1)] = m.group(2)
    assert opts, (section, cp.stdout)
    return opts


def normalise(v):
    v = v.strip().strip("`")
    if v in ('""', "unset", "[]"):
        return "unset"
    return re.sub(r"\s+", "", v)


def test_readme_documents_every_option_with_its_default():
    """Each section's table lists exactly the binary's options, with its defaults."""
    H.require_plugins("websocket")
    tables = readme_tables()
    problems = []
    for section in SECTIONS.values():
        if section != "core" and not H.plugin_built(section):
            continue  # a plugin this build does not have
        assert section in tables, "README.md has no option table for %s" % section
        doc, real = tables[section], binary_table(section)
        for name in sorted(set(real) - set(doc)):
            problems.append("%s.%s is accepted but not documented" % (section, name))
        for name in sorted(set(doc) - set(real)):
            problems.append("%s.%s is documented but unknown to vcgate" % (section, name))
        for name in sorted(set(doc) & set(real)):
            if (section, name) in DESCRIBED:
                continue
            d, r = normalise(doc[name]), normalise(real[name])
            if d != r:
                problems.append("%s.%s: README says %s, vcgate -P says %s"
                                % (section, name, doc[name], real[name]))
    assert not problems, "\n".join(problems)
