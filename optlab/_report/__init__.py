"""The comparison, from run records alone (no MLflow here): table rows, the table, figures.

::

    rows.py     the comparison's rows (replicates as mean ± std, best by validation)
    table.py    the rows as a table in the terminal (rich)
    figures.py  learning curves, weight templates, confusion matrix, comparison, sweeps

matplotlib is imported inside the functions that draw (it takes a second to load).
"""
