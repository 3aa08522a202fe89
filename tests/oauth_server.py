"""A fake OAuth 2.0 / OpenID Connect authorization server over TLS, shaped like Microsoft's
identity platform (per-tenant endpoints) and like a generic provider (``/authorize``,
``/token``), for msal and requests-oauthlib to talk to.

Example::

    idp = OAuthServer.start(tmp_path / "idp", account="help@example.test")
    try:
        token_url = idp.token_url("contoso")   # https://localhost:PORT/contoso/oauth2/v2.0/token
        ...                                    # clients trust idp.ca_file
        idp.revoke_refresh_tokens()
    finally:
        idp.stop()

Endpoints:
    GET  /{tenant}/v2.0/.well-known/openid-configuration, /.well-known/openid-configuration
    GET  /{tenant}/oauth2/v2.0/authorize, /authorize: consent given at once (by ``account``),
         or refused (``consent = "deny"``): 302 to ``redirect_uri`` with code or error, and state.
    POST /{tenant}/oauth2/v2.0/token, /token: ``authorization_code`` (PKCE S256 checked, and
         redirect_uri) and ``refresh_token`` (rotated: the old one stops working); the client
         secret in the body or as HTTP Basic.

Errors as Entra gives them: ``invalid_grant`` (AADSTS70008) for a revoked or unknown refresh
token, ``invalid_client`` (AADSTS7000215) for a wrong secret, ``invalid_request``
(AADSTS90002) with HTTP 400 for an unknown tenant, discovery included. ``fault = "html"``
makes the token endpoint answer an HTML page. The id token is unsigned (alg none) and holds
the nonce of the authorization, ``preferred_username``, ``email`` and a ``client_info`` is
returned when asked for. The scope in answers leaves out offline_access, openid and profile.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from certificates import ServerCertificates
from servers import free_port

HOST = "localhost"
RESERVED = {"offline_access", "openid", "profile"}


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    account: str
    scope: str
    nonce: str | None
    tenant: str | None


@dataclass
class _Refresh:
    client_id: str
    account: str
    scope: str
    tenant: str | None


@dataclass
class Logged:
    method: str
    path: str
    #: The form's grant_type, or the authorize request's parameters (no secrets kept).
    grant_type: str | None = None
    client_auth: str | None = None
    params: dict[str, str] = field(default_factory=dict)


class OAuthServer:
    """The fake authorization server; see the module's docstring.

    Attributes (change them in a test at any time):
        account: who signs in and consents at the authorize endpoints.
        consent: ``"accept"``, or ``"deny"`` for ``error=access_denied``.
        tenants: tenant names the Microsoft-shaped endpoints know.
        clients: client_id -> secret (None: a public client, no secret asked).
        access_token_lifetime: seconds, the ``expires_in`` of every access token.
        on_issue: called with (access token, account) for each access token issued.
        fault: None, or ``"html"``: the token endpoints answer an HTML page.
        log: every request, in order.
        ca_file: the CA that signed the server's certificate (a client's ``tls.ca_file``).
    """

    def __init__(
        self,
        folder: Path,
        *,
        account: str,
        tenants: tuple[str, ...] = ("contoso",),
        clients: dict[str, str | None] | None = None,
        access_token_lifetime: int = 3600,
        on_issue: Callable[[str, str], None] | None = None,
    ) -> None:
        self.account = account
        self.consent = "accept"
        self.tenants = set(tenants)
        self.clients: dict[str, str | None] = (
            clients if clients is not None else {"mailroom": "client-secret"}
        )
        self.access_token_lifetime = access_token_lifetime
        self.on_issue = on_issue
        self.fault: str | None = None
        self.log: list[Logged] = []
        self.issued_access_tokens: list[str] = []
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._lock = threading.Lock()
        certs = ServerCertificates.make(folder)
        self.ca_file = certs.ca_file
        self.port = free_port()
        self.base_url = f"https://{HOST}:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = False  # server_close() waits for every request
        self._server.socket = certs.server_context().wrap_socket(
            self._server.socket, server_side=True
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-idp"
        )

    @classmethod
    def start(cls, folder: Path, **options: Any) -> OAuthServer:
        server = cls(folder, **options)
        server._thread.start()
        return server

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- addresses ---------------------------------------------------------------------------

    def token_url(self, tenant: str = "contoso") -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    def authorization_url(self, tenant: str = "contoso") -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/authorize"

    @property
    def generic_token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def generic_authorization_url(self) -> str:
        return f"{self.base_url}/authorize"

    # -- what tests do -------------------------------------------------------------------------

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far stops working (``invalid_grant``)."""
        with self._lock:
            self._refresh.clear()

    @property
    def refresh_tokens(self) -> list[str]:
        """The refresh tokens that work now."""
        with self._lock:
            return list(self._refresh)

    def token_requests(self, grant_type: str) -> list[Logged]:
        return [r for r in self.log if r.grant_type == grant_type]

    # -- the server ----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                idp._get(self)

            def do_POST(self) -> None:  # noqa: N802
                idp._post(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        params = dict(parse_qsl(parts.query))
        path = parts.path.strip("/").split("/")
        self.log.append(Logged("GET", parts.path, params=_public(params)))
        if path == [".well-known", "openid-configuration"]:
            self._json(request, 200, self._discovery(None))
        elif len(path) == 4 and path[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            if path[0] not in self.tenants:
                self._json(request, 400, _unknown_tenant(path[0]))
            else:
                self._json(request, 200, self._discovery(path[0]))
        elif path == ["authorize"]:
            self._authorize(request, params, None)
        elif len(path) == 4 and path[1:] == ["oauth2", "v2.0", "authorize"]:
            if path[0] not in self.tenants:
                self._json(request, 400, _unknown_tenant(path[0]))
            else:
                self._authorize(request, params, path[0])
        else:
            self._json(request, 404, {"error": "not_found"})

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        path = parts.path.strip("/").split("/")
        length = int(request.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(request.rfile.read(length).decode()))
        client_id, secret, how = _client_auth(request, form)
        self.log.append(Logged("POST", parts.path, form.get("grant_type"), how))
        tenant: str | None = None
        if len(path) == 4 and path[1:] == ["oauth2", "v2.0", "token"]:
            tenant = path[0]
            if tenant not in self.tenants:
                self._json(request, 400, _unknown_tenant(tenant))
                return
        elif path != ["token"]:
            self._json(request, 404, {"error": "not_found"})
            return
        if self.fault == "html":
            self._html(request)
            return
        if client_id not in self.clients or (
            self.clients[client_id] is not None and secret != self.clients[client_id]
        ):
            self._json(request, 401, _error("invalid_client", "AADSTS7000215: Invalid client "
                                            "secret provided."))  # fmt: skip
            return
        with self._lock:
            answer = self._grant(form, client_id, tenant)
        status = 400 if "error" in answer else 200
        self._json(request, status, answer)

    def _authorize(
        self, request: BaseHTTPRequestHandler, params: dict[str, str], tenant: str | None
    ) -> None:
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") not in self.clients or not redirect_uri:
            self._json(request, 400, _error("unauthorized_client", "unknown client"))
            return
        back: dict[str, str] = {}
        if self.consent == "deny":
            back = {"error": "access_denied", "error_description": "The user declined."}
        elif params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            back = {"error": "invalid_request", "error_description": "PKCE S256 required."}
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = _Code(
                    client_id=params["client_id"],
                    redirect_uri=redirect_uri,
                    challenge=params["code_challenge"],
                    method=params["code_challenge_method"],
                    account=self.account,
                    scope=params.get("scope", ""),
                    nonce=params.get("nonce"),
                    tenant=tenant,
                )
            back = {"code": code}
            if params.get("client_info") == "1":
                back["client_info"] = self._client_info(self.account, tenant)
        if "state" in params:
            back["state"] = params["state"]
        sep = "&" if "?" in redirect_uri else "?"
        request.send_response(302)
        request.send_header("Location", redirect_uri + sep + urlencode(back))
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _grant(self, form: dict[str, str], client_id: str, tenant: str | None) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.client_id != client_id or code.tenant != tenant:
                return _error("invalid_grant", "AADSTS70000: The provided authorization code "
                              "is invalid or has expired.")  # fmt: skip
            if form.get("redirect_uri") != code.redirect_uri:
                return _error("invalid_grant", "AADSTS50148: redirect_uri does not match.")
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return _error("invalid_grant", "AADSTS501481: The Code_Verifier does not "
                              "match the code_challenge.")  # fmt: skip
            return self._issue(client_id, code.account, code.scope, tenant, code.nonce, form)
        if grant_type == "refresh_token":
            held = self._refresh.pop(form.get("refresh_token", ""), None)
            if held is None or held.client_id != client_id or held.tenant != tenant:
                return _error("invalid_grant", "AADSTS70008: The provided authorization code "
                              "or refresh token has expired due to inactivity.")  # fmt: skip
            return self._issue(client_id, held.account, held.scope, tenant, None, form)
        return _error("unsupported_grant_type", f"grant_type {grant_type!r}")

    def _issue(
        self,
        client_id: str,
        account: str,
        scope: str,
        tenant: str | None,
        nonce: str | None,
        form: dict[str, str],
    ) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self._refresh[refresh] = _Refresh(client_id, account, scope, tenant)
        self.issued_access_tokens.append(access)
        if self.on_issue is not None:
            self.on_issue(access, account)
        kept = " ".join(s for s in scope.split(" ") if s.lower() not in RESERVED)
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": kept or scope,
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": self._id_token(client_id, account, tenant, nonce),
        }
        if form.get("client_info") == "1":
            answer["client_info"] = self._client_info(account, tenant)
        return answer

    def _id_token(self, client_id: str, account: str, tenant: str | None, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer(tenant),
            "aud": client_id,
            "sub": _oid(account),
            "oid": _oid(account),
            "tid": _tenant_id(tenant),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "preferred_username": account,
            "email": account,
            "name": account.split("@")[0],
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."

    def _client_info(self, account: str, tenant: str | None) -> str:
        return _b64({"uid": _oid(account), "utid": _tenant_id(tenant)})

    def _issuer(self, tenant: str | None) -> str:
        return f"{self.base_url}/{_tenant_id(tenant)}/v2.0" if tenant else self.base_url

    def _discovery(self, tenant: str | None) -> dict[str, Any]:
        if tenant is None:
            authorize, token = self.generic_authorization_url, self.generic_token_url
        else:
            authorize, token = self.authorization_url(tenant), self.token_url(tenant)
        return {
            "issuer": self._issuer(tenant),
            "authorization_endpoint": authorize,
            "token_endpoint": token,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "id_token_signing_alg_values_supported": ["none"],
        }

    @staticmethod
    def _json(request: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    @staticmethod
    def _html(request: BaseHTTPRequestHandler) -> None:
        body = b"<!doctype html><html><body><h1>Sign in</h1><form></form></body></html>"
        request.send_response(200)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _client_auth(
    request: BaseHTTPRequestHandler, form: dict[str, str]
) -> tuple[str | None, str | None, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return unquote_plus(user), unquote_plus(password), "basic"
    return form.get("client_id"), form.get("client_secret"), "body"


def _error(code: str, description: str) -> dict[str, Any]:
    return {
        "error": code,
        "error_description": f"{description}\r\nTrace ID: {uuid.uuid4()}\r\nTimestamp: now",
        "error_codes": [int(description[6:].split(":")[0])] if description[:6] == "AADSTS" else [],
    }


def _unknown_tenant(tenant: str) -> dict[str, Any]:
    return _error(
        "invalid_request",
        f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud.",
    )


def _public(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in ("code", "client_secret")}


def _oid(account: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, account.lower()))


def _tenant_id(tenant: str | None) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant or "generic"))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
