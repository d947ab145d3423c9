"""The sentences the services write (a job's reason, a site's verdict, an attempt's end, a
transfer's state, an error's detail) as the dashboard shows them: times in Beijing time, and on
Chinese pages in Chinese.

The services word their reasons in English, for the CLI, the API and the logs. The dashboard
translates them here, clause by clause (clauses are joined by ``"; "``; ``"site: …"`` names the
site a clause is about), by the patterns below. A clause no pattern knows stays as it is, in
English, rather than being dropped: ``tests/browser/test_pages_nojs.py`` renders the Chinese
pages of every state the demo reaches and fails on the English of any known phrase, so a new
reason needs its pattern here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

#: "~07:18 UTC", "07:18:05 UTC", "2026-12-03 06:43:37 UTC" as the services write them.
_UTC = re.compile(r"(?:(\d{4}-\d{2}-\d{2})[ T])?(\d{2}):(\d{2})(?::(\d{2}))? UTC")
_BEIJING = timedelta(hours=8)


def _local(match: re.Match[str], lang: str) -> str:
    day, hh, mm, ss = match.groups()
    if day:
        when = datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss or '00'}") + _BEIJING
        text = when.strftime("%Y-%m-%d %H:%M" + (":%S" if ss else ""))
    else:
        minutes = (int(hh) * 60 + int(mm) + 8 * 60) % (24 * 60)
        text = f"{minutes // 60:02d}:{minutes % 60:02d}" + (f":{ss}" if ss else "")
    return f"北京时间 {text}" if lang == "zh" else f"{text} Beijing time"


def local_times(text: str, lang: str) -> str:
    """Every ``HH:MM UTC`` in ``text`` as Beijing time (the dashboard's one zone)."""
    return _UTC.sub(lambda m: _local(m, lang), text)


def _want(text: str) -> str:
    """A resource request: ``2 nodes × 8 × H100 or 16 CPUs`` → ``2 个节点 × 8 × H100 或 16 个 CPU``."""
    text = re.sub(r"(\d+) nodes × ", r"\1 个节点 × ", text)
    text = re.sub(r"([\d.]+) CPUs?\b", r"\1 个 CPU", text)
    return text.replace(" or ", " 或 ")


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rule(pattern: str, make: Callable[[re.Match[str]], str]) -> _Rule:
    return re.compile(pattern + r"$"), make


#: States inside sentences ("attempt 1 was lost"), lower case as the services write them.
_STATES = {
    "lost": "丢失",
    "failed": "失败",
    "preempted": "被抢占",
    "cancelled": "已取消",
    "succeeded": "成功",
}

#: Whole clauses, English → Chinese. Groups are translated again where they hold a clause.
_RULES: list[_Rule] = [
    # the scheduler: why a job waits, and what each site offers it (core/scheduling/explain.py)
    _rule(r"no site may take it: (.+)", lambda m: f"没有站点可以接收此作业：{zh(m[1])}"),
    _rule(r"no site has nodes that can hold (.+)", lambda m: f"没有站点的节点能容纳 {_want(m[1])}"),
    _rule(
        r"every site that can hold (.+) is offline \((.+)\)",
        lambda m: f"能容纳 {_want(m[1])} 的站点均已离线（{m[2]}）",
    ),
    _rule(r"no site has (\S+) \(GPU types here: (.+)\)", lambda m: f"没有站点有 {m[1]}（此处的 GPU 型号：{m[2]}）"),
    _rule(r"no site has (.+) free", lambda m: f"没有站点有空闲的 {_want(m[1])}"),
    _rule(r"largest free is (\d+) × (\S+) at (\S+)", lambda m: f"最大空闲为 {m[3]} 的 {m[1]} × {m[2]}"),
    _rule(r"every (\S+) is in use", lambda m: f"所有 {m[1]} 都在使用中"),
    _rule(r"(\S+) frees (.+) at ~(.+)", lambda m: f"{m[1]} 预计于{m[3]} 空出 {_want(m[2])}"),
    _rule(
        r"running jobs there have no time limit, so no estimate of when",
        lambda m: "那里运行的作业没有时间限制，无法估计何时空出",
    ),
    _rule(
        r"busy; running jobs have no time limit, so no estimate of when it frees",
        lambda m: "繁忙；运行中的作业没有时间限制，无法估计何时空出",
    ),
    _rule(r"unavailable: (.+)", lambda m: f"不可用：{zh(m[1], split=', ')}"),
    _rule(
        r"(\S+) runs no containers \(the job runs in image (.+)\)",
        lambda m: f"{m[1]} 不运行容器（作业使用镜像 {m[2]}）",
    ),
    _rule(
        r"region (\S+) is not in placement\.regions \((.+)\)",
        lambda m: f"区域 {m[1]} 不在 placement.regions（{m[2]}）之内",
    ),
    _rule(r"latency from (\S+) is not declared", lambda m: f"未声明与 {m[1]} 之间的延迟"),
    _rule(
        r"([\d.]+) ms from (\S+) is over max_latency_ms ([\d.]+)",
        lambda m: f"距 {m[2]} {m[1]} 毫秒，超过 max_latency_ms {m[3]}",
    ),
    _rule(
        r"([\d.]+) CNY/GPU-hour now is over max_price_per_gpu_hour ([\d.]+)",
        lambda m: f"当前 {m[1]} 元/GPU·小时，超过 max_price_per_gpu_hour {m[2]}",
    ),
    _rule(
        r"([^:]+) does not match (.+)",
        lambda m: f"{m[1].replace('no GPU', '无 GPU')} 与 {m[2].replace(' or ', ' 或 ')} 不符",
    ),
    _rule(r"no node can hold (.+)", lambda m: f"没有节点能容纳 {_want(m[1])}"),
    _rule(r"offline \(no heartbeat from its agent\)", lambda m: "离线（其代理没有心跳）"),
    _rule(r"([^:]+) free now, (.+)", lambda m: f"{_want(m[1])} 现在空闲，{zh(m[2], split=', ')}"),
    _rule(r"([^:]+) free now", lambda m: f"{_want(m[1])} 现在空闲"),
    _rule(r"([^:]+) free at ~([^,]+), (.+)", lambda m: f"{_want(m[1])} 预计于{m[2]} 空闲，{zh(m[3], split=', ')}"),
    _rule(r"([^:]+) free at ~([^,]+)", lambda m: f"{_want(m[1])} 预计于{m[2]} 空闲"),
    _rule(r"([\d.]+) CNY/GPU-h", lambda m: f"{m[1]} 元/GPU·小时"),
    _rule(r"([\d.]+) ms from (\S+)", lambda m: f"距 {m[2]} {m[1]} 毫秒"),
    # budgets (app/budgets.py)
    _rule(
        r"tenant (\S+): ([\d,.]+) of ([\d,.]+) CNY this month",
        lambda m: f"租户 {m[1]}：本月已用 {m[2]} 元（预算 {m[3]} 元）",
    ),
    _rule(r"this job's estimate is ([\d,.]+) CNY", lambda m: f"本作业预估 {m[1]} 元"),
    # a job's life (core/lifecycle.py, the agents)
    _rule(r"cancelled by the user", lambda m: "已被用户取消"),
    _rule(r"cancelled from the dashboard", lambda m: "已从控制台取消"),
    _rule(r"cancelling: waiting for the site to stop it", lambda m: "正在取消：等待站点停止作业"),
    _rule(r"(?:run )?exited with code (-?\d+)", lambda m: f"以退出码 {m[1]} 结束"),
    _rule(r"no retries left \((\d+)\)", lambda m: f"重试次数已用完（{m[1]}）"),
    _rule(
        r"requeued after attempt (\d+) was (\w+) \((.*)\)",
        lambda m: f"第 {m[1]} 次尝试{_STATES.get(m[2], m[2])}后重新排队（{zh(m[3])}）",
    ),
    _rule(r"running setup", lambda m: "正在运行 setup"),
    _rule(r"node (\S+) failed: (.+)", lambda m: f"节点 {m[1]} 故障：{zh(m[2])}"),
    _rule(r"(.+): stopping at (\S+), then requeued", lambda m: f"{zh(m[1])}：正在 {m[2]} 停止，之后重新排队"),
    _rule(r"preempted by (.+)", lambda m: f"被 {m[1]} 抢占"),
    _rule(r"the agent is shutting down", lambda m: "代理正在关闭"),
    _rule(r"(\S+) drained: (.+)", lambda m: f"{m[1]} 已排空：{m[2]}"),
    _rule(r"(\S+) unhealthy: (.+)", lambda m: f"{m[1]} 不健康：{m[2]}"),
    _rule(r"(\S+) (drained|unhealthy)", lambda m: f"{m[1]} {'已排空' if m[2] == 'drained' else '不健康'}"),
    # the data chain (app/movements.py, app/staging.py)
    _rule(r"copied, encrypted and verified", lambda m: "已复制、加密并校验"),
    _rule(r"allowed by accepted filing (\S+)", lambda m: f"已获备案 {m[1]} 批准"),
    # error pages (app/dashboard.py, web/routes.py)
    _rule(r"no job '(.+)'; the jobs page lists the jobs", lambda m: f"没有作业 “{m[1]}”；作业页面列出了所有作业"),
    _rule(
        r"the nodes page is for the network's and the sites' operators",
        lambda m: "节点页面仅供网络运维人员和站点运维人员使用",
    ),
    _rule(
        r"draining nodes is for the network's and the site's operators",
        lambda m: "排空节点仅限网络运维人员和该站点运维人员",
    ),
    _rule(
        r"the form is stale or came from another site; reload the page and try again",
        lambda m: "表单已过期或来自其他网站；请刷新页面后重试",
    ),
    _rule(r"no invoice for tenant '(.+)'", lambda m: f"没有租户 “{m[1]}” 的账单"),
]

#: The error pages' titles (``ServiceError.title``).
TITLES_ZH = {
    "Bad request": "请求有误",
    "Not found": "未找到",
    "Conflict": "冲突",
    "Invalid request": "请求无效",
    "Unauthorized": "未登录",
    "Forbidden": "无权访问",
    "Request too large": "请求过大",
    "Insufficient storage": "存储空间不足",
    "Too many open log streams": "打开的日志流过多",
    "Secrets unavailable": "密钥不可用",
}

_SITE_CLAUSE = re.compile(r"([a-z0-9][a-z0-9-]*): (.+)$")


def _clause(text: str) -> str:
    for pattern, make in _RULES:
        match = pattern.match(text)
        if match:
            return make(match)
    site = _SITE_CLAUSE.match(text)
    if site:
        inner = _clause(site[2])
        if inner != site[2]:
            return f"{site[1]}：{inner}"
    return text


def zh(text: str, split: str = "; ") -> str:
    """``text`` in Chinese, clause by clause (an unknown clause stays as it is)."""
    whole = _clause(text)
    if whole != text:
        return whole
    parts = text.split(split)
    if len(parts) == 1:
        return text
    return ("；" if split == "; " else "，").join(_clause(p) for p in parts)


def show(text: str | None, lang: str) -> str:
    """A service's sentence as the dashboard shows it in ``lang``."""
    if not text:
        return ""
    text = local_times(text, lang)
    return zh(text) if lang == "zh" else text


def title(text: str, lang: str) -> str:
    return TITLES_ZH.get(text, text) if lang == "zh" else text
