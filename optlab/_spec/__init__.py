"""Experiment spec files: read, validated, expanded into runs.

::

    reader.py      YAML (ruamel.yaml) with every key's position, and the file's limits
    models.py      the pydantic model of a spec file, built from the registry
    issues.py      pydantic's errors as located one-line issues
    expand.py      variants, sweeps and seed replicates, as pure functions
    experiment.py  the validated result: Experiment and its RunSpecs
    runs.py        a validated spec expanded into its runs, each validated where it comes from
    load.py        load_experiment: file (or mapping) -> Experiment, or SpecError
    schema.py      the JSON Schema of spec files (``optlab schema``)
"""
