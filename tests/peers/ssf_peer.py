"""An OpenID Shared Signals (SSF) peer of Tessera's, with PyJWT and jwcrypto.

  keygen DIR            RSA key in DIR/private.pem, public JWKS (kid pyjwt-1) in DIR/jwks.json
  set DIR JSON          a Security Event Token (RFC 8417) signed RS256 by PyJWT with that
                        key, as an SSF transmitter makes them: header typ secevent+jwt and
                        kid; JSON gives the claims (iss, aud, events, sub_id, ...), jti and
                        iat are filled in unless given; "_typ" / "_kid" override the header
  poll-server [AUTH]    an RFC 8936 transmitter's poll endpoint (POST /poll), requiring
                        Authorization: AUTH when given; SETs are
                        queued with POST /queue {"sets": {jti: SET}}; GET /state tells what
                        the receiver acknowledged and refused
  receiver              an RFC 8935 push endpoint (POST /events) verifying each SET with
                        jwcrypto against the transmitter's JWKS; POST /control {"jwks_uri",
                        "issuer", "audience", "authorization"} says which, and the
                        Authorization header required; GET /state lists what verified

The servers listen on 127.0.0.1 on a free port and print "PORT <n>" first.
"""

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import requests
from jwcrypto import jwk, jws

# The transmitter's key is made as the PyJWT peer makes its own (kid `pyjwt-1`).
from pyjwt_peer import keygen

SET_TYP = "secevent+jwt"


def make_set(directory: str, claims_json: str) -> None:
    pem = (Path(directory) / "private.pem").read_bytes()
    claims = json.loads(claims_json)
    typ = claims.pop("_typ", SET_TYP)
    kid = claims.pop("_kid", "pyjwt-1")
    claims.setdefault("jti", str(uuid.uuid4()))
    claims.setdefault("iat", int(time.time()))
    print(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid, "typ": typ}))


class Server(ThreadingHTTPServer):
    daemon_threads = True


def json_body(handler: BaseHTTPRequestHandler):
    length = int(handler.headers.get("Content-Length") or 0)
    return json.loads(handler.rfile.read(length) or b"{}")


def answer(handler: BaseHTTPRequestHandler, status: int, body=None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    handler.send_response(status)
    if body is not None:
        handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def poll_server(authorization: str = "") -> None:
    """RFC 8936 §2: the transmitter's side of poll-based delivery; with `authorization`,
    polls must carry it as their Authorization header (RFC 8936 §4.1)."""
    lock = threading.Lock()
    queue: dict = {}  # jti -> SET, in order, until acknowledged or refused
    state = {"acked": [], "errors": {}, "polls": [], "unknown_acks": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != "/state":
                return answer(self, 404, {"error": "not found"})
            with lock:
                answer(self, 200, dict(state, pending=list(queue)))

        def do_POST(self):
            if self.path == "/queue":
                with lock:
                    queue.update(json_body(self)["sets"])
                return answer(self, 200, {})
            if self.path != "/poll":
                return answer(self, 404, {"error": "not found"})
            if authorization and self.headers.get("Authorization") != authorization:
                return answer(self, 401, {"err": "authentication_failed", "description": "Authorization"})
            # §2.4: a poll request is a JSON object.
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                return answer(self, 400, {"err": "invalid_request", "description": "not JSON"})
            request = json_body(self)
            ack = request.get("ack", [])
            errs = request.get("setErrs", {})
            max_events = request.get("maxEvents")
            immediately = request.get("returnImmediately", False)
            if not isinstance(ack, list) or not isinstance(errs, dict):
                return answer(self, 400, {"err": "invalid_request", "description": "ack / setErrs"})
            if max_events is not None and (not isinstance(max_events, int) or max_events < 0):
                return answer(self, 400, {"err": "invalid_request", "description": "maxEvents"})
            with lock:
                state["polls"].append(request)
                # §2.4.2: acknowledged SETs are not delivered again.
                for jti in ack:
                    if jti in queue:
                        queue.pop(jti)
                        state["acked"].append(jti)
                    else:
                        state["unknown_acks"].append(jti)
                # §2.4.4: SETs with errors are reported and not delivered again.
                for jti, err in errs.items():
                    if not isinstance(err, dict) or "err" not in err or "description" not in err:
                        return answer(self, 400, {"err": "invalid_request", "description": "setErrs"})
                    if queue.pop(jti, None) is not None:
                        state["errors"][jti] = err
                limit = len(queue) if max_events is None else max_events
                sets = dict(list(queue.items())[:limit])
                more = len(queue) > len(sets)
            if not sets and not immediately:
                time.sleep(0.2)  # a short long-poll: nothing is waiting
            answer(self, 200, {"sets": sets, "moreAvailable": more})

    serve(Handler)


def receiver() -> None:
    """RFC 8935 §2: a SET recipient, verifying each SET as SSF receivers do."""
    lock = threading.Lock()
    config: dict = {}
    state = {"received": [], "refused": []}

    def refuse(handler, err, description):
        with lock:
            state["refused"].append({"err": err, "description": description})
        answer(handler, 400, {"err": err, "description": description})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with lock:
                answer(self, 200, state)

        def do_POST(self):
            if self.path == "/control":
                with lock:
                    config.update(json_body(self))
                return answer(self, 200, {})
            if self.path != "/events":
                return answer(self, 404, {"error": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            token = self.rfile.read(length).decode()
            with lock:
                cfg = dict(config)
            if cfg.get("authorization") and self.headers.get("Authorization") != cfg["authorization"]:
                return refuse(self, "authentication_failed", "Authorization")
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/secevent+jwt":
                return refuse(self, "invalid_request", "content type")
            try:
                keys = jwk.JWKSet.from_json(requests.get(cfg["jwks_uri"], timeout=5).text)
                signed = jws.JWS()
                signed.deserialize(token)
                header = signed.jose_header
                signed.verify(keys.get_key(header["kid"]), alg=header["alg"])
            except Exception as e:  # noqa: BLE001 - any failure is a refusal
                return refuse(self, "invalid_key", f"signature: {e}")
            if header.get("typ") != SET_TYP:
                return refuse(self, "invalid_request", "typ")
            claims = json.loads(signed.payload)
            if claims.get("iss") != cfg["issuer"]:
                return refuse(self, "invalid_issuer", "iss")
            aud = claims.get("aud")
            if cfg["audience"] not in (aud if isinstance(aud, list) else [aud]):
                return refuse(self, "invalid_audience", "aud")
            if "exp" in claims or "sub" in claims or not isinstance(claims.get("events"), dict):
                return refuse(self, "invalid_request", "not a SET")
            with lock:
                state["received"].append({"header": header, "claims": claims})
            answer(self, 202)

    serve(Handler)


def serve(handler) -> None:
    server = Server(("127.0.0.1", 0), handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    {"keygen": keygen, "set": make_set, "poll-server": poll_server, "receiver": receiver}[command](*args)


if __name__ == "__main__":
    main()
