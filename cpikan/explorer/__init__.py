"""The explorer wing (extra ``cpikan[study]``): an ipywidgets panel for JupyterLab that builds a
config from the schema, trains in the background and draws live figures. The core never imports it."""

from cpikan.explorer.panel import Explorer

__all__ = ["Explorer"]
