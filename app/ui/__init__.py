"""The Streamlit search page (``rag ui``): :mod:`.page` is the script, a thin layer over
:class:`app.service.SearchService`; :mod:`.render` turns a previewed file into HTML and
:mod:`.results` cuts a result's snippet for its card."""
