"""The web app: agent, supervisor and admin pages, the JSON API, live calls, playback.

``routes.setup_routes(app)`` wires it into `serve`'s application. By role: ``auth``
(sessions, roles, CSRF, throttling), ``live`` (AMI -> live call state, agent
attribution), ``retrieval`` + ``streaming`` (audited, ranged playback and download),
``api`` + ``jsonio`` + ``openapi`` (JSON API), ``admin``, ``metrics``, ``views`` +
``pages`` (HTML), ``static/`` (CSS and a little JavaScript).
"""
