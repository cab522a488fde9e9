"""The response-header helpers the request id and security headers layers write with."""

from app.middleware.headers import HeaderSet, encoded, set_header


def start(*headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def test_encoded_names_are_lowercase():
    assert encoded([("X-Frame-Options", "DENY")]) == ((b"x-frame-options", b"DENY"),)


def test_a_header_set_replaces_the_apps_own_and_keeps_the_rest_in_order():
    security = HeaderSet(encoded([("X-Frame-Options", "DENY"), ("Referrer-Policy", "none")]))
    message = start((b"content-type", b"text/plain"), (b"x-frame-options", b"SAMEORIGIN"))
    security.apply(message)
    assert message["headers"] == [
        (b"content-type", b"text/plain"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"none"),
    ]


def test_a_default_fills_in_only_what_the_app_did_not_set():
    defaults = HeaderSet(replace=(), default=encoded([("Content-Security-Policy", "fallback")]))
    own = start((b"content-security-policy", b"the page's own"))
    defaults.apply(own)
    assert own["headers"] == [(b"content-security-policy", b"the page's own")]
    bare = start()
    defaults.apply(bare)
    assert bare["headers"] == [(b"content-security-policy", b"fallback")]


def test_a_message_without_headers_gets_them():
    message: dict = {"type": "http.response.start", "status": 204}
    set_header(message, b"x-request-id", b"abc")
    assert message["headers"] == [(b"x-request-id", b"abc")]


def test_set_header_leaves_a_single_value():
    message = start((b"x-request-id", b"old"), (b"vary", b"accept"), (b"x-request-id", b"older"))
    set_header(message, b"x-request-id", b"new")
    assert message["headers"] == [(b"vary", b"accept"), (b"x-request-id", b"new")]
