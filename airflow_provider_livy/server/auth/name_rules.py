"""Hadoop's `auth_to_local` rules (`livy.server.auth.kerberos.name-rules`): a Kerberos principal to a user name.

Rules are tried in order; the first that applies names the user. Two forms, as in Hadoop's KerberosName:
- `DEFAULT`: a principal of the default realm maps to its first component (`alice@REALM` -> `alice`,
  `HTTP/host@REALM` -> `HTTP`).
- `RULE:[n:format](regex)s/pattern/replacement/[g][/L]`: applies to principals of n components; the format
  (`$0` the realm, `$1`, `$2` the components) builds a string, which must match the regex (whole), and is
  then rewritten by the sed-like substitution (`g` for every match); `/L` lowercases the result.
No rule applying is a refusal (Hadoop's NoMatchingRule), not a pass with the full principal.
"""

from __future__ import annotations

import dataclasses
import re

from airflow_provider_livy.server.auth.principals import split_principal

_RULE = re.compile(
    r"\s*(?:(?P<default>DEFAULT)|RULE:\[(?P<n>\d+):(?P<format>[^\]]*)\]"
    r"(?:\((?P<match>[^)]*)\))?"
    r"(?:s/(?P<pattern>[^/]*)/(?P<replacement>[^/]*)/(?P<global>g)?)?"
    r"(?P<lower>/L)?)\s*"
)
_PARAM = re.compile(r"\$(\d+)")


class NameRuleError(ValueError):
    """The rules text does not parse."""


@dataclasses.dataclass(frozen=True)
class Rule:
    default: bool = False
    components: int = 0
    format: str = ""
    match: re.Pattern[str] | None = None
    pattern: re.Pattern[str] | None = None
    replacement: str = ""
    every: bool = False
    lower: bool = False

    def apply(self, parts: list[str], default_realm: str) -> str | None:
        realm, names = parts[0], parts[1:]
        if self.default:
            return names[0] if realm == default_realm else None
        if len(names) != self.components:
            return None
        try:
            base = _PARAM.sub(lambda m: parts[int(m.group(1))], self.format)
        except IndexError:
            return None
        if self.match is not None and not self.match.fullmatch(base):
            return None
        if self.pattern is not None:
            base = self.pattern.sub(self.replacement, base, count=0 if self.every else 1)
        if not base or "@" in base or "/" in base:
            return None  # Hadoop: a rule must leave a simple name
        return base.lower() if self.lower else base


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rules are separated by whitespace or newlines, as in core-site.xml."""
    rules, position, text = [], 0, text.strip()
    while position < len(text):
        found = _RULE.match(text, position)
        if found is None or found.end() == position:
            raise NameRuleError(f"cannot read name rule at {text[position : position + 40]!r}")
        position = found.end()
        if found.group("default"):
            rules.append(Rule(default=True))
            continue
        try:
            match = re.compile(found.group("match")) if found.group("match") is not None else None
            pattern = re.compile(found.group("pattern")) if found.group("pattern") is not None else None
        except re.error as err:
            raise NameRuleError(f"bad regular expression in name rule {found.group(0).strip()!r}: {err}") from None
        replacement = re.sub(r"\$(\d)", r"\\\1", found.group("replacement") or "")
        rules.append(
            Rule(
                components=int(found.group("n")),
                format=found.group("format"),
                match=match,
                pattern=pattern,
                replacement=replacement,
                every=bool(found.group("global")),
                lower=bool(found.group("lower")),
            )
        )
    if not rules:
        raise NameRuleError("no name rules given; use DEFAULT")
    return tuple(rules)


def short_name(principal: str, rules: tuple[Rule, ...], default_realm: str) -> str | None:
    """The user a principal maps to, or None when no rule applies."""
    parts = split_principal(principal)
    if parts is None:
        return None
    for rule in rules:
        result = rule.apply(parts, default_realm)
        if result is not None:
            return result
    return None
