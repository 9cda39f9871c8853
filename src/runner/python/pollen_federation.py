"""Pollen's side of a project's REMOTE federation (Flower 1.42), in one helper.

    pollen_federation.py ca       DIR                  DIR/ca.key, DIR/ca.crt
    pollen_federation.py server   DIR NAME [NAME...]   DIR/server.key, DIR/server.crt for these IPs/DNS names
    pollen_federation.py nodekey  DIR NAME             DIR/NAME.key (OpenSSH private), DIR/NAME.pub
    pollen_federation.py register ADDRESS CA PUBKEY NAME   prints {"nodeId": "..."}
    pollen_federation.py unregister ADDRESS CA NODE_ID     prints {"ok": true}
    pollen_federation.py monitor  ADDRESS CA INTERVAL      prints the node list as one JSON line per poll

Why Python: `cryptography` comes with flwr, and Flower's own Control API client reads the
fields that `flwr supernode list --format json` drops (the last heartbeat, the public key), keeps
uint64 node ids exact (as strings), and polls for a fraction of the CPU of a `flwr` call.

Key choices (verified with flwr 1.42.0): CA and server keys EC P-256, PEM, unencrypted (uvicorn
takes no password); the server certificate carries the extensions Python >= 3.13's strict
verification wants, so nodes on newer Pythons accept it. Node keys must be EC on a NIST curve and
the private key in OpenSSH format (flower-supernode rejects PEM/PKCS8); the public key is the
OpenSSH line that the SuperLink registers.
"""

import datetime
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(out: Path, common_name: str = "Pollen project CA") -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(out / "ca.key", _pem_key(key), private=True)
    _write(out / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def make_server(out: Path, names: list[str]) -> None:
    ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pollen-superlink")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False,
                crl_sign=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write(out / "server.key", _pem_key(key), private=True)
    _write(out / "server.crt", cert.public_bytes(serialization.Encoding.PEM))


def make_node_key(out: Path, name: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    _write(
        out / f"{name}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write(out / f"{name}.pub", pub + f" {name}\n".encode())



# ------------------------------------------------------------------ Control API


def _client(address: str, ca: str):
    from flwr.supercore.control import ControlHttpClient

    return ControlHttpClient.from_server_address(
        address, insecure=False, root_certificates=Path(ca).read_bytes(), interceptors=[]
    )


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def register(address: str, ca: str, public_key_file: str, name: str) -> dict:
    from flwr.proto.control_pb2 import RegisterNodeRequest  # pylint: disable=E0611
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes as to_bytes

    key = serialization.load_ssh_public_key(Path(public_key_file).read_bytes())
    res = _client(address, ca).RegisterNode(RegisterNodeRequest(public_key=to_bytes(key), name=name))
    return {"nodeId": str(res.node_id)}


def unregister(address: str, ca: str, node_id: str) -> dict:
    from flwr.proto.control_pb2 import UnregisterNodeRequest  # pylint: disable=E0611

    _client(address, ca).UnregisterNode(UnregisterNodeRequest(node_id=int(node_id)))
    return {"ok": True}


def list_nodes(client) -> dict:
    from flwr.common.constant import HEARTBEAT_PATIENCE
    from flwr.proto.control_pb2 import ListNodesRequest  # pylint: disable=E0611

    res = client.ListNodes(ListNodesRequest())
    nodes = []
    for n in res.nodes_info:
        online_until = n.online_until if n.HasField("online_until") else None
        # While online, the SuperLink keeps online_until = last contact + HEARTBEAT_PATIENCE x
        # heartbeat_interval, so the last heartbeat is exact; once offline it cannot be told.
        last_heartbeat = None
        if n.status == "online" and online_until is not None:
            last_heartbeat = online_until - HEARTBEAT_PATIENCE * n.heartbeat_interval
        public_key = None
        if n.public_key:
            public_key = serialization.load_pem_public_key(n.public_key).public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ).decode()
        nodes.append({
            "nodeId": str(n.node_id),  # uint64: kept as a string (> 2^53)
            "status": n.status,
            "lastHeartbeatAt": _iso(last_heartbeat),
            "lastActivatedAt": n.last_activated_at or None,
            "lastDeactivatedAt": n.last_deactivated_at or None,
            "publicKey": public_key,
        })
    return {"nodes": nodes}


def monitor(address: str, ca: str, interval: float) -> None:
    client = _client(address, ca)
    while True:
        try:
            print(json.dumps(list_nodes(client)), flush=True)
        except Exception as err:  # the SuperLink restarting: say so and keep polling
            print(json.dumps({"error": str(err)}), flush=True)
        time.sleep(interval)


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd in ("ca", "server", "nodekey"):
        out = Path(args[0])
        out.mkdir(parents=True, exist_ok=True)
        if cmd == "ca":
            make_ca(out)
        elif cmd == "server":
            make_server(out, args[1:])
        else:
            make_node_key(out, args[1])
    elif cmd == "register":
        print(json.dumps(register(*args)))
    elif cmd == "unregister":
        print(json.dumps(unregister(*args)))
    elif cmd == "monitor":
        monitor(args[0], args[1], float(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
