"""F4: the results as a chart, in the results' place.

Drawn by textual-plotext (plotext's Unicode blocks and braille, so it reads in any terminal
over SSH) in the app theme's colours. It works with Textual 8 and plotext draws labelled
horizontal bars; textual-plot, the newer native widget, draws vertical bars only. What to
draw (which columns, which order, how many bars) is decided by model/sqlite/chart.py from the
rows already loaded; this widget only draws it.
Bars get one text row each (a scrolling area holds up to 50), their value at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from model.llm.sql.results import has_order_by
from model.sqlite.chart import Chart, NoChart, chart_for, tick_indexes, value_text
from tui.safe_text import shown
from tui.widgets.results import ResultsTable

if TYPE_CHECKING:
    from textual.app import App

# Series colours, from the app's theme, in this order.
THEME_COLORS = ("primary", "accent", "success", "warning", "error", "secondary")


def theme_colors(app: App[Any]) -> list[str]:
    """The theme's colours for series, as #rrggbb (matplotlib reads them too), each once."""
    variables = app.theme_variables
    colors = [Color.parse(variables[name]).hex for name in THEME_COLORS if name in variables]
    return list(dict.fromkeys(colors))


def chart_of(table: ResultsTable, sql: str | None) -> Chart | NoChart:
    """The chart of the rows `table` has loaded (never more: a chart must not fetch); `sql`,
    the query they came from, decides whether bars keep its order."""
    if sql is None or not table.columns_names:
        return NoChart("no rows: run a query first")
    return chart_for(table.columns_names, table.raw, ordered=has_order_by(sql), more=table.more)


def bar_rows(chart: Chart) -> int:
    """Text rows the bars take: one per bar and series, a blank row between groups."""
    k = len(chart.series)
    return len(chart.labels) * k + (len(chart.labels) - 1 if k > 1 else 0)


class ChartPlot(PlotextPlot):
    """A plotext plot of a `Chart`, redrawn at each render: where a bar's value text goes
    depends on how many cells wide the plot is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chart: Chart | None = None

    def render(self) -> Any:
        plt = self.plt
        plt.clear_figure()
        if self.chart is not None:
            colors = [Color.parse(c).rgb for c in theme_colors(self.app)]
            if self.chart.kind == "bars":
                self._bars(self.chart, colors)
            else:
                self._line(self.chart, colors)
        return super().render()

    def _bars(self, chart: Chart, colors: list[tuple[int, int, int]]) -> None:
        plt, k = self.plt, len(chart.series)
        step = k + 1 if k > 1 else 1  # rows per label
        top = bar_rows(chart)
        values = [v for s in chart.series for v in s.values]
        low, high = min(0, *values), max(0, *values)
        # Leave room after the longest bar for its value: the cells the text needs, out of
        # the cells the plot has once the labels and the frame are drawn.
        cells = max(self.size.width - max(map(len, chart.labels)) - 3, 10)
        text_cells = max(len(value_text(v)) for v in values) + 3
        span = (high - low) or 1
        high += span * text_cells / max(cells - text_cells, 1)
        cell = (high - low) / cells
        for j, series in enumerate(chart.series):
            color = colors[j % len(colors)]
            ys = [top - i * step - j for i in range(len(chart.labels))]
            plt.bar(ys, series.values, orientation="horizontal", width=0.01, color=color)
            for y, value in zip(ys, series.values, strict=True):
                plt.text(value_text(value), x=max(value, 0) + 2 * cell, y=y, alignment="left",
                         color=color)
        plt.yticks([top - i * step for i in range(len(chart.labels))], chart.labels)
        plt.xlim(low, high)
        plt.ylim(0.5, top + 0.5)

    def _line(self, chart: Chart, colors: list[tuple[int, int, int]]) -> None:
        plt = self.plt
        for j, series in enumerate(chart.series):
            plt.plot(chart.x, series.values, marker="braille", color=colors[j % len(colors)])
        widest = max(map(len, chart.labels))
        ticks = tick_indexes(len(chart.x), max(2, min(8, self.size.width // (widest + 4))))
        plt.xticks([chart.x[i] for i in ticks], [chart.labels[i] for i in ticks])
        plt.xlabel(shown(chart.x_name))  # a column name: data, drawn, never sent raw


class ResultsChart(VerticalScroll):
    """The legend (each series' name in its colour), then the plot; the caption is the border's
    subtitle, as the row count is the results table's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Chart"
        self.chart: Chart | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="chart-legend")
        yield ChartPlot(id="chart-plot")

    def show(self, chart: Chart) -> None:
        self.chart = chart
        colors = theme_colors(self.app)
        # Column names are data: a Text is never parsed as markup; control characters drawn.
        legend = Text(f"{shown(chart.x_name)} → " if chart.kind == "bars" else "", style="dim")
        for j, series in enumerate(chart.series):
            legend.append("  ■ " if j else "■ ", style=colors[j % len(colors)])
            legend.append(shown(series.name))
        self.query_one("#chart-legend", Static).update(legend)
        plot = self.query_one(ChartPlot)
        plot.chart = chart
        # Bars: one text row each, plus the frame and the axis; a line fills the area.
        plot.styles.height = bar_rows(chart) + 3 if chart.kind == "bars" else "1fr"
        plot.refresh()
        self.border_subtitle = chart.caption
        self.scroll_home(animate=False)
