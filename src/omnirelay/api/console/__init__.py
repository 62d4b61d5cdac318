"""The web console under /console: server-rendered page shells, sign-in, the playground.

Every page is a small HTML shell that the server renders for the signed-in user (their
navigation and CSRF token), plus one hand-written ES module that reads the admin API
(``/admin/*``, with the session cookie) and draws the page. No build step, no JS toolchain,
nothing fetched from elsewhere: the static files ship inside the Python package
(``static/``). See docs/console.md for why.
"""
