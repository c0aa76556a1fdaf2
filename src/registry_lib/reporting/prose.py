"""Prose, not prints: key numbers and conclusions as Markdown written from the results.

A report's sentences are Markdown (``IPython.display.Markdown``), so they wrap like text,
take emphasis and read as part of the document; ``print`` output is monospace and cut
mid-word by the page width.

Example:
    >>> markdown_text(["First finding.", "Second finding."], title="Conclusion")
    '**Conclusion**\\n\\n- First finding.\\n- Second finding.'
    >>> count_text(3195.0), count_text(None), percent_text(0.0497)
    ('3,195', 'fewer than 8 (suppressed)', '5.0%')
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from registry_lib.reporting.tables import format_p


def markdown_text(lines: str | Sequence[str], *, title: str | None = None, bullets: bool | None = None) -> str:
    """Markdown for a paragraph (one string) or a list of findings (several strings).

    Example:
        >>> markdown_text("Incidence rose by 4% a year.", title="Trend")
        '**Trend**\\n\\nIncidence rose by 4% a year.'
        >>> markdown_text(["Stage I: 92%.", "Stage IV: 18%."], bullets=False)
        'Stage I: 92%.\\n\\nStage IV: 18%.'
    """
    items = [lines] if isinstance(lines, str) else [str(x) for x in lines if str(x).strip()]
    as_list = (len(items) > 1) if bullets is None else bullets
    body = "\n".join(f"- {x}" for x in items) if as_list else "\n\n".join(items)
    return f"**{title}**\n\n{body}" if title else body


def say(lines: str | Sequence[str], *, title: str | None = None, bullets: bool | None = None) -> None:
    """Display a sentence (or several, as a list) as Markdown in the report.

    Example:
        >>> from unittest import mock
        >>> with mock.patch("IPython.display.display") as shown:   # what the report receives
        ...     say(["SIR 1.52 within 2 km.", "No trend with distance."], title="Findings")
        >>> print(shown.call_args.args[0].data)
        **Findings**
        <BLANKLINE>
        - SIR 1.52 within 2 km.
        - No trend with distance.
    """
    from IPython.display import Markdown, display

    display(Markdown(markdown_text(lines, title=title, bullets=bullets)))


def conclude(lines: str | Sequence[str], *, title: str = "Conclusion") -> None:
    """Display the conclusion of a section (a titled paragraph or list of findings).

    Example:
        >>> from unittest import mock
        >>> with mock.patch("IPython.display.display") as shown:   # what the report receives
        ...     conclude("Net survival at 5 years rose from 52% to 58%.")
        >>> print(shown.call_args.args[0].data)
        **Conclusion**
        <BLANKLINE>
        Net survival at 5 years rose from 52% to 58%.
    """
    say(lines, title=title)


def count_text(n: float | None, *, suppressed: str = "fewer than 8 (suppressed)") -> str:
    """A count in a sentence: thousands separators, or a phrase where it is suppressed.

    Example:
        >>> count_text(12345.0), count_text(float("nan")), count_text(None, suppressed="[c]")
        ('12,345', 'fewer than 8 (suppressed)', '[c]')
    """
    if n is None or pd.isna(n):
        return suppressed
    return f"{round(float(n)):,}"


def percent_text(share: float | None, digits: int = 1) -> str:
    """A share (0–1) as a percentage in a sentence (``n/a`` when missing).

    Example:
        >>> percent_text(0.1234), percent_text(0.1234, digits=0), percent_text(None)
        ('12.3%', '12%', 'n/a')
    """
    if share is None or pd.isna(share):
        return "n/a"
    return f"{100 * float(share):.{digits}f}%"


def p_text(p: float | None) -> str:
    """A p-value in a sentence: ``p < 0.001`` or ``p = 0.042``.

    Example:
        >>> p_text(0.00004), p_text(0.0416), p_text(float("nan"))
        ('p < 0.001', 'p = 0.042', 'p not available')
    """
    if p is None or pd.isna(p):
        return "p not available"
    text = format_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def interval_text(estimate: float, lower: float, upper: float, digits: int = 2) -> str:
    """``1.52 (95% CI 1.10–2.05)``.

    Example:
        >>> interval_text(1.5234, 1.1012, 2.0488)
        '1.52 (95% CI 1.10–2.05)'
        >>> interval_text(0.8, 0.61, float("nan")), interval_text(0.5843, 0.5511, 0.6162, digits=3)
        ('not available', '0.584 (95% CI 0.551–0.616)')
    """
    if any(pd.isna(v) for v in (estimate, lower, upper)):
        return "not available"
    return f"{estimate:.{digits}f} (95% CI {lower:.{digits}f}–{upper:.{digits}f})"
