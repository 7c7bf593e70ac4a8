"""The intermediary conformance suite: checks that hold a proxy to RFC 9110 / RFC 9112 from
both sides of it, and a corpus of ambiguous requests each decided from the backend's bytes.

Rules kept here: the corpus (``corpus``, ``ambiguous``, ``forms``, ``chunks``, ``heads``) and
its classification (``classify``) stay pure: no socket, no thread. The checks (``hop``,
``semantics``, ``forwarding``, ``messages``, ``answers``, ``smuggling``) send through a
:class:`Target` (``check``), and ``runner`` runs them; ``proxies`` starts packaged proxies
from the configs shipped in ``configs/``; ``command`` is ``deproxy conformance``. ``CHECKS``
is every check, in a stable order::

    from pytest_deproxy.conformance import CHECKS, run

    @pytest.mark.parametrize("check", CHECKS, ids=str)
    def test_my_proxy(check, deproxy, my_proxy, my_origin):
        result = run(check, deproxy=deproxy, url=my_proxy.url, origin=my_origin)
        assert result.verdict != "fail", result.report()
"""

from . import answers, forwarding, hop, messages, semantics, smuggling
from .check import REGISTRY, VERDICTS, Check, Outcome, Result, Target
from .runner import Report, ordered, run

CHECKS: tuple[Check, ...] = tuple(ordered(REGISTRY))
"""Every check, in the order they are reported (by topic, then as written)."""

del answers, forwarding, hop, messages, semantics, smuggling

__all__ = ["CHECKS", "VERDICTS", "Check", "Outcome", "Report", "Result", "Target", "run"]
