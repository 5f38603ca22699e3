"""The comparison, from run records alone (no MLflow here): table rows, the table, figures;
and the listing of `optlab components`.

::

    rows.py         the comparison's rows (replicates as mean ± std, best by validation)
    table.py        the rows as a table in the terminal (rich)
    listing.py      optlab components as a table in the terminal, no name or param broken
    drawing.py      what every figure shares: the canvas, ticks, saving, smoothing, log axes
    run_figures.py  one run: learning curves, weight templates, confusion matrix
    comparison.py   several runs side by side; small multiples for large sweeps
    sweep.py        validation accuracy against the swept values (the course's heatmap)
    planes.py       decision regions of 2-D data, the loss landscape through W

matplotlib is imported inside the functions that draw (it takes a second to load).
"""
