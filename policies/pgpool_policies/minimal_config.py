"""The guide's minimal configuration, checked wherever the settings live (pgpool.conf or PGPOOL_PARAMS_* env)."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import ReportViolation

from .common import GUIDE, SECRET_NAME, Subject, resource_policy, stack_policy
from .database import backing_postgres, standbys
from .kube import group_of
from .pgpool_conf import PgpoolConfig, Referenced, Setting, as_bool, as_number, flags
from .sources import PgpoolInstance, StackView, literal_env, secret_text
from .values import UNKNOWN, as_int, as_list, dig

def _redacted(line: str) -> str:
    key = re.split(r"[\s=]", line.strip(), maxsplit=1)[0]
    return f"{key} = <value not shown>" if SECRET_NAME.search(key) else line


def check_syntax(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        for number, line in config.errors:
            if config.env_mode:
                report(f"{config.subject}: env {line} holds a single quote, newline or '=': the image's entrypoint "
                       f"writes it as `name = '<value>'` line by line and splits at the last '=', so Pgpool-II reads "
                       f"a truncated value or stops with a syntax error; remove those characters from the value")
            else:
                report(f"{config.subject} line {number}: `{_redacted(line)}` does not parse as `name = value`, so "
                       f"Pgpool-II stops with 'syntax error in configuration file'; quote text values in single "
                       f"quotes (e.g. backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'), writing a quote "
                       f"inside one as \\'")


def check_two_backends(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        hosts = config.per_node("backend_hostname")
        defined = sorted(n for n, s in hosts.items() if s.value is UNKNOWN or isinstance(s.value, Referenced)
                         or (s.text or "").strip())
        extra = [n for n in defined if n > 1]
        if extra:
            shown = ", ".join(config.show(hosts[n]) for n in extra)
            report(f"{config.subject}: {len(defined)} backends are configured ({shown}); on Kubernetes Pgpool-II "
                   f"needs exactly two, node 0 = the primary Service and node 1 = the replica Service, because the "
                   f"Services already spread connections over the pods ({GUIDE}, 'Backend settings'); remove "
                   + ", ".join(f"backend_*{n}" for n in extra))
        if not config.complete:
            continue
        for node, service in ((0, "primary"), (1, "replica")):
            if node not in defined:
                report(f"{config.subject}: {config.show(config.get(f'backend_hostname{node}'))}: Pgpool-II needs "
                       f"backend node {node} = the {service} Service ({GUIDE}, 'Backend settings'); "
                       f"{config.fix(f'backend_hostname{node}', f'<{service} Service host>')}")


GUIDE_FLAGS = {0: "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", 1: "DISALLOW_TO_FAILOVER"}


def _flag_problem(node: int, value: str) -> str | None:
    present = flags(value)
    needed = {"DISALLOW_TO_FAILOVER"} | ({"ALWAYS_PRIMARY"} if node == 0 else set())
    problems = [f"lacks {', '.join(sorted(needed - present))}"] if needed - present else []
    if "ALLOW_TO_FAILOVER" in present:
        problems.append("allows failover")
    if node == 1 and "ALWAYS_PRIMARY" in present:
        problems.append("marks the replica Service as primary")
    return " and ".join(problems) or None


def check_backend_flags(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        for node, wanted in GUIDE_FLAGS.items():
            setting = config.get(f"backend_flag{node}")
            problem = _flag_problem(node, setting.text) if setting.text is not None else None
            if problem:
                report(f"{config.subject}: {config.show(setting)}: that value {problem}: Kubernetes, not Pgpool-II, "
                       f"restarts and fails over PostgreSQL pods, and node 0's Service always reaches the primary ({GUIDE}, "
                       f"'Automated failover'); {config.fix(setting.name, wanted)}")


def fix_backend_flags(config: PgpoolConfig) -> dict[str, str]:
    return {f"backend_flag{node}": wanted for node, wanted in GUIDE_FLAGS.items()
            if (text := config.get(f"backend_flag{node}").text) is not None and _flag_problem(node, text)}


def _switch_problem(config: PgpoolConfig, name: str, wanted: bool) -> Setting | None:
    """The setting when it is readable and not the wanted boolean (an unreadable spelling counts as wrong)."""
    setting = config.get(name)
    if setting.text is None:
        return None
    return setting if as_bool(setting.text) is not wanted else None


def _switch_policy(name: str, wanted: bool, why: str):
    word = "on" if wanted else "off"

    def check(subject: Subject, report: ReportViolation) -> None:
        for config in subject.configs():
            setting = _switch_problem(config, name, wanted)
            if setting:
                report(f"{config.subject}: {config.show(setting)}, but it must be {word}: {why}; "
                       f"{config.fix(name, word)}")

    def fix(config: PgpoolConfig) -> dict[str, str]:
        return {name: word} if _switch_problem(config, name, wanted) else {}

    return check, fix


check_failover_on_backend_error, fix_failover_on_backend_error = _switch_policy(
    "failover_on_backend_error", False,
    f"a broken connection would detach a backend Pgpool-II can never fail over, while Kubernetes restarts the pod "
    f"behind the Service ({GUIDE}, 'Automated failover')")
check_load_balance_mode, fix_load_balance_mode = _switch_policy(
    "load_balance_mode", True,
    f"without it every read goes to the primary and the standbys idle ({GUIDE}, 'Load balancing')")
check_connection_cache, fix_connection_cache = _switch_policy(
    "connection_cache", True,
    f"connection pooling is the other half of why Pgpool-II runs here ({GUIDE}, 'Deploy Pgpool-II')")


def _listens_everywhere(value: str) -> bool:
    return any(part.strip() in ("*", "0.0.0.0", "::") for part in value.split(","))


def check_listen_addresses(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        setting = config.get("listen_addresses")
        if setting.text is not None and not _listens_everywhere(setting.text):
            report(f"{config.subject}: {config.show(setting)}: the Service sends clients to the pod's IP, which "
                   f"Pgpool-II then refuses ({GUIDE}, minimal configuration); {config.fix('listen_addresses', '*')}")


def fix_listen_addresses(config: PgpoolConfig) -> dict[str, str]:
    text = config.get("listen_addresses").text
    return {"listen_addresses": "*"} if text is not None and not _listens_everywhere(text) else {}


OFF_VALUES = {
    "use_watchdog": "off",
    "auto_failback": "off",
    "failover_command": "",
    "failback_command": "",
    "follow_primary_command": "",
    "recovery_1st_stage_command": "",
    "recovery_2nd_stage_command": "",
}


def _failover_machinery(config: PgpoolConfig) -> list[Setting]:
    """Health check, watchdog, failover and online-recovery settings that are on."""
    found = []
    periods = [config.get("health_check_period")] + list(config.per_node("health_check_period").values())
    for setting in periods:
        if setting.text is not None and as_number(setting.text) != 0:
            found.append(setting)
    for name, off in OFF_VALUES.items():
        setting = config.get(name)
        if setting.text is None:
            continue
        on = as_bool(setting.text) is not False if off == "off" else setting.text.strip() != ""
        if on:
            found.append(setting)
    return found


def check_no_failover_machinery(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        for setting in _failover_machinery(config):
            off = "0" if setting.name.startswith("health_check_period") else OFF_VALUES[setting.name]
            report(f"{config.subject}: {config.show(setting)}: health check, watchdog, failover and online recovery "
                   f"are not required on Kubernetes, which monitors and restarts the pods itself ({GUIDE}, "
                   f"'Deploy Pgpool-II'); {config.fix(setting.name, off)}")


def fix_no_failover_machinery(config: PgpoolConfig) -> dict[str, str]:
    return {s.name: "0" if s.name.startswith("health_check_period") else OFF_VALUES[s.name]
            for s in _failover_machinery(config)}


def check_backend_weight(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for instance in stack.pgpool_instances():
        config = instance.config
        weight = config.get("backend_weight1") if config else None
        if weight is None or weight.text is None:
            continue
        for postgres in backing_postgres(config, stack, instance.workload.namespace):
            count = standbys(postgres)
            if count is None or _number(weight.text) == count:
                continue
            report(f"{config.subject}: {config.show(weight)}, but {postgres.title} runs {count} standby pod(s) behind "
                   f"the replica Service (spec.replicas = {count + 1}); backend_weight1 must be the number of "
                   f"standbys so reads spread evenly over all pods ({GUIDE}, 'Load balancing'); "
                   f"{config.fix('backend_weight1', str(count))}", instance.config_urn)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def check_hot_standby(subject: Subject, report: ReportViolation) -> None:
    if subject.kind != "Postgres" or group_of(subject.resource_type) != "kubedb.com":
        return
    replicas = as_int(dig(subject.props, "spec", "replicas", default=1))
    mode = dig(subject.props, "spec", "standbyMode")
    if mode is UNKNOWN or replicas is None or replicas < 2 or mode == "Hot":
        return
    shown = f"spec.standbyMode = {mode}" if mode else "spec.standbyMode is not set, so KubeDB's default Warm applies"
    report(f"{subject.title}: {shown}: warm standbys refuse connections, so the replica Service that Pgpool-II sends "
           f"reads to (backend node 1) has nothing to serve them; set spec.standbyMode: Hot")


USERNAME_ENV = re.compile(r"(?P<prefix>[^_]+)_USERNAME")
POOL_PASSWD_KEY = "pool_passwd"


def pool_passwd_users(stack: StackView, instance: PgpoolInstance) -> tuple[set[str], bool]:
    """Users with a pool_passwd entry: from the image's <PREFIX>_USERNAME/_PASSWORD env pairs and from
    pool_passwd files in Secrets the pod mounts. The flag says whether some of them are unknown."""
    workload, container, config = instance.workload, instance.workload.pgpool, instance.config
    users: set[str] = set()
    unknown = False
    if config.entrypoint and literal_env(container, "PGPOOL_ENABLE_POOL_PASSWD") in (None, "yes", "true", "on"):
        env = {e["name"]: e for e in container.env if isinstance(e, dict) and isinstance(e.get("name"), str)}
        for name, item in env.items():
            match = USERNAME_ENV.fullmatch(name)  # the image cuts the prefix at the first underscore
            if match and f"{match.group('prefix')}_PASSWORD" in env:
                value = stack.env_value(item, workload.namespace)
                if isinstance(value, str):
                    users.add(value)
                else:
                    unknown = True
    for volume in workload.volumes.values():
        names = [dig(volume, "secret", "secretName")] + [
            dig(s, "secret", "name") for s in as_list(dig(volume, "projected", "sources"))]
        for secret in (stack.find("Secret", n, workload.namespace) for n in names if isinstance(n, str)):
            text = secret_text(secret.props, POOL_PASSWD_KEY) if secret else None
            unknown = unknown or text is UNKNOWN
            if isinstance(text, str):
                users |= {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}
    return users, unknown


def check_sr_check_password(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for instance in stack.pgpool_instances():
        config = instance.config
        if config is None:
            continue
        period, user, password = (config.get(n) for n in ("sr_check_period", "sr_check_user", "sr_check_password"))
        if period.text is None or as_number(period.text) == 0 or user.text is None:
            continue
        if password.value is UNKNOWN or isinstance(password.value, Referenced) or (password.text or "").strip():
            continue
        users, unknown = pool_passwd_users(stack, instance)
        if user.text in users or unknown:
            continue
        report(f"{config.subject}: {config.show(period)}: the streaming replication check is on, for sr_check_user "
               f"'{user.text}', but that user has no password: sr_check_password is empty and no pool_passwd entry exists "
               f"for '{user.text}', so the image exits ('password of sr_check_user is not set') and Pgpool-II cannot "
               f"log in ({GUIDE}, 'Streaming replication check'); {config.fix('sr_check_period', '0')} (the guide's "
               f"choice on Kubernetes) or give '{user.text}' a <PREFIX>_USERNAME/<PREFIX>_PASSWORD env pair from a "
               f"Secret", instance.config_urn)


POLICIES = [
    resource_policy(
        "pgpool-conf-syntax",
        "pgpool.conf (or the PGPOOL_PARAMS_* env the image turns into it) must parse: Pgpool-II refuses to start "
        "on a line that is not `name = value`.",
        check_syntax),
    resource_policy(
        "pgpool-two-backends",
        f"Exactly two backends: node 0 = the primary Service, node 1 = the replica Service ({GUIDE}, 'Backend "
        "settings'). Kubernetes Services already spread connections over the pods behind them.",
        check_two_backends),
    resource_policy(
        "pgpool-backend-flags",
        f"backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER' and backend_flag1 = 'DISALLOW_TO_FAILOVER' ({GUIDE}, "
        "'Automated failover'): Kubernetes owns failover and the primary Service always reaches the primary. The "
        "image's default for backend_flag0 is ALLOW_TO_FAILOVER.",
        check_backend_flags, fix=fix_backend_flags),
    resource_policy(
        "pgpool-failover-on-backend-error-off",
        f"failover_on_backend_error = off ({GUIDE}, 'Automated failover'): a detached backend is never re-attached "
        "on Kubernetes.",
        check_failover_on_backend_error, fix=fix_failover_on_backend_error),
    resource_policy(
        "pgpool-load-balance-mode-on",
        f"load_balance_mode = on ({GUIDE}, 'Load balancing'): read queries are spread over the standbys.",
        check_load_balance_mode, fix=fix_load_balance_mode),
    resource_policy(
        "pgpool-connection-cache-on",
        f"connection_cache = on ({GUIDE}, minimal configuration): Pgpool-II pools backend connections.",
        check_connection_cache, fix=fix_connection_cache),
    resource_policy(
        "pgpool-listen-all-addresses",
        f"listen_addresses = '*' ({GUIDE}, minimal configuration): Services reach Pgpool-II on the pod IP; "
        "Pgpool-II's own default is localhost.",
        check_listen_addresses, fix=fix_listen_addresses),
    resource_policy(
        "pgpool-no-health-check-watchdog-failover",
        f"Health check, watchdog, failover/failback commands and online recovery off ({GUIDE}, 'Deploy Pgpool-II'): "
        "Kubernetes monitors and restarts PostgreSQL pods.",
        check_no_failover_machinery, fix=fix_no_failover_machinery),
    stack_policy(
        "pgpool-backend-weight-matches-standbys",
        f"backend_weight1 = the number of standbys of the KubeDB Postgres behind the replica Service ({GUIDE}, "
        "'Load balancing'): Pgpool-II sees all standbys as one backend, so its weight must count them.",
        check_backend_weight),
    resource_policy(
        "kubedb-postgres-hot-standby",
        "A KubeDB Postgres with standbys runs them as hot standbys (spec.standbyMode: Hot): warm standbys, KubeDB's "
        "default, refuse the read queries Pgpool-II balances to the replica Service.",
        check_hot_standby),
    stack_policy(
        "pgpool-sr-check-password",
        f"With the streaming replication check on (sr_check_period > 0), sr_check_user has a password: "
        f"sr_check_password or a pool_passwd entry ({GUIDE}, 'Streaming replication check').",
        check_sr_check_password),
]
