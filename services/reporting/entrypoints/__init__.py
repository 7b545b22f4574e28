"""Where input reaches reporting: ``kafka`` (the projection subscriber), ``http`` and
``integration_http`` (report routes), ``dashboard`` (the static page)."""
