"""The PySide6 viewer (`cxrviewer` command); the only package that imports Qt.

Modules: `app` (entry point), `main_window`, `study_browser`, `image_view` (canvas + colour bar),
`findings_panel`, `dialogs`, `workers` (background decode/inference), `backend` (the doorway to the
headless imaging and model layers), `records` (study/image state), `settings`, `assets`. PDF reports
are written by the headless `cxrviewer.report.pdf_writer`, for the viewer and the CLI alike.
"""
