"""The live dashboard: a static page at ``/`` fed by Server-Sent Events (``/events``)."""
