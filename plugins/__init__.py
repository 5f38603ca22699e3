"""optlab's bundled plugins, installed as ``optlab_plugins``.

They register through the same ``optlab`` entry-point group and hooks as any third-party
plugin, and import only optlab's public surface.
"""
