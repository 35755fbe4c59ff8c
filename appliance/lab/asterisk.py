"""A real Asterisk 22 for the lab and the tests, run from the cached sid root.

Each instance gets its own directory inside the root (configs, spool, logs, run
dir), its own free AMI port, and a dialplan that points at the caller's FastAGI
port, so two instances (a test run and `callvault lab up`) can share one root.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from agi.dialplan import LAB_CONTEXT

from . import rootfs

AMI_USER = "lab"
MODULES_CONF = """\
[modules]
autoload=yes
; Channel drivers and resources the lab does not need, and that log noise or
; open ports when loaded.
noload => chan_dahdi.so
noload => chan_mobile.so
noload => chan_iax2.so
noload => chan_unistim.so
noload => chan_skinny.so
noload => chan_mgcp.so
noload => chan_ooh323.so
noload => res_hep.so
noload => res_hep_rtcp.so
noload => res_hep_pjsip.so
noload => cdr_radius.so
noload => cel_radius.so
noload => res_config_ldap.so
noload => res_snmp.so
noload => res_xmpp.so
noload => chan_motif.so
noload => res_calendar.so
noload => res_corosync.so
noload => res_prometheus.so
noload => res_phoneprov.so
noload => res_http_websocket.so
noload => chan_websocket.so
noload => res_ari.so
; PJSIP is loaded (the SIP test phones); these parts of it are not used.
noload => res_pjsip_outbound_publish.so
noload => res_pjsip_publish_asterisk.so
noload => res_pjsip_phoneprov_provider.so
noload => res_pjsip_stir_shaken.so
noload => res_pjsip_config_wizard.so
noload => res_pjsip_geolocation.so
"""

# The test phones: SIP user agents on this machine (SIPp), calling in the way a
# trunk would, so a call's Request-URI user is the DID the dialplan routes on.
SIP_ENDPOINT = "lab-phone"


def pjsip_conf(sip_port: int, context: str) -> str:
    return f"""[global]
type = global
user_agent = callvault-lab

[lab-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{sip_port}

[{SIP_ENDPOINT}]
type = endpoint
transport = lab-udp
context = {context}
disallow = all
allow = ulaw,alaw
dtmf_mode = rfc4733
rtp_symmetric = yes
direct_media = no

[{SIP_ENDPOINT}]
type = identify
endpoint = {SIP_ENDPOINT}
match = 127.0.0.1
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@dataclass(frozen=True)
class AsteriskPaths:
    """Where an instance lives, as the host sees it and as Asterisk sees it."""

    root: Path
    name: str

    @property
    def inside(self) -> str:
        return f"/callvault-lab/{self.name}"

    @property
    def host(self) -> Path:
        return self.root / "callvault-lab" / self.name

    def host_path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    @property
    def spool_inside(self) -> str:
        return f"{self.inside}/spool/callvault"

    @property
    def spool_host(self) -> Path:
        return self.host_path(self.spool_inside)

    @property
    def data_inside(self) -> str:
        return f"{self.inside}/data"

    @property
    def sounds_host(self) -> Path:
        """This instance's own sounds dir (prompts installed here stay private to it)."""
        return self.host_path(self.data_inside) / "sounds"


class LabAsterisk:
    """Start, reconfigure and stop one Asterisk instance inside the lab root."""

    def __init__(self, root: Path, name: str | None = None, *, ami_port: int | None = None,
                 sip_port: int | None = None):
        self.paths = AsteriskPaths(root, name or f"t{os.getpid()}-{secrets.token_hex(3)}")
        self.ami_port = ami_port or free_port()
        self.sip_port = sip_port or free_port(socket.SOCK_DGRAM)
        self.ami_user = AMI_USER
        self.ami_secret = secrets.token_hex(12)
        self.proc: subprocess.Popen | None = None

    # -- configuration -------------------------------------------------------
    def write_configs(self, dialplan: str, *, manager_extra: str = "", features: str = "",
                      sip_context: str = LAB_CONTEXT) -> None:
        p, inside = self.paths, self.paths.inside
        etc = p.host / "etc"
        for sub in ("etc", "spool/callvault", "run", "log", "lib", "monitor"):
            (p.host / sub).mkdir(parents=True, exist_ok=True)
        # MixMonitor runs as Asterisk's user; the chroot's asterisk uid may differ.
        os.chmod(p.spool_host, 0o1777)
        self._link_data_dir()
        files = {
            "asterisk.conf": f"""[directories]
astetcdir => {inside}/etc
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => {inside}/lib
astkeydir => /var/lib/asterisk
astdatadir => {p.data_inside}
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {inside}/spool
astrundir => {inside}/run
astlogdir => {inside}/log
[options]
verbose = 1
maxcalls = 500
""",
            "modules.conf": MODULES_CONF,
            "logger.conf": "[general]\n[logfiles]\nconsole => notice,warning,error\n"
                           "messages.log => notice,warning,error,verbose(3)\n",
            "manager.conf": f"""[general]
enabled = yes
port = {self.ami_port}
bindaddr = 127.0.0.1
; Events carry Asterisk's own time: tests line recordings up with it.
timestampevents = yes

[{self.ami_user}]
secret = {self.ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all
{manager_extra}""",
            "extensions.conf": "[general]\nstatic=yes\nwriteprotect=yes\n\n" + dialplan,
            "features.conf": features or "[general]\n",
            # Quiet and harmless defaults for modules that read these at load.
            "cdr.conf": "[general]\nenable=no\n",
            "cel.conf": "[general]\nenable=no\n",
            "http.conf": "[general]\nenabled=no\n",
            "pjsip.conf": pjsip_conf(self.sip_port, sip_context),
            # Below the kernel's ephemeral range; wide enough for many SIP calls at once.
            "rtp.conf": "[general]\nrtpstart=20000\nrtpend=29999\n",
            "indications.conf": "[general]\ncountry=za\n[za]\ndescription=South Africa\n",
        }
        for fname, text in files.items():
            (etc / fname).write_text(text)

    def _link_data_dir(self) -> None:
        """A per-instance astdatadir: links to the packaged data, own sounds dir.

        Links are absolute paths as Asterisk sees them inside the chroot.
        """
        shared = self.paths.root / "usr/share/asterisk"
        data = self.paths.host_path(self.paths.data_inside)
        sounds = data / "sounds"
        sounds.mkdir(parents=True, exist_ok=True)
        for entry in shared.iterdir():
            if entry.name != "sounds" and not os.path.lexists(data / entry.name):
                (data / entry.name).symlink_to(f"/usr/share/asterisk/{entry.name}")
        for entry in (shared / "sounds").iterdir():
            if entry.name.startswith((".", "callvault")):
                continue  # prompts are per instance
            if not os.path.lexists(sounds / entry.name):
                (sounds / entry.name).symlink_to(f"/usr/share/asterisk/sounds/{entry.name}")

    # -- process -------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        rootfs.mount_pseudo(self.paths.root)
        (self.paths.host_path("/var/run/asterisk")).mkdir(parents=True, exist_ok=True)
        with open(self.paths.host / "log" / "console.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["chroot", str(self.paths.root), "/usr/sbin/asterisk", "-C",
                 f"{self.paths.inside}/etc/asterisk.conf", "-f", "-n", "-q"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        (self.paths.host / "asterisk.pid").write_text(str(self.proc.pid))
        self._wait_ami(timeout)

    def _wait_ami(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Asterisk exited with {self.proc.returncode}; see "
                                   f"{self.paths.host / 'log' / 'console.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.ami_port), timeout=1) as s:
                    if s.recv(64).startswith(b"Asterisk Call Manager") and udp_port_bound(self.sip_port):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"Asterisk did not answer on AMI port {self.ami_port} and SIP port "
                           f"{self.sip_port} in {timeout} s")

    def cli(self, command: str, timeout: float = 20.0) -> str:
        """Run an Asterisk CLI command over the control socket."""
        out = subprocess.run(
            ["chroot", str(self.paths.root), "/usr/sbin/asterisk", "-C",
             f"{self.paths.inside}/etc/asterisk.conf", "-rx", command],
            check=False, capture_output=True, text=True, timeout=timeout)
        return out.stdout

    def stop(self, timeout: float = 15.0) -> None:
        pid = self.proc.pid if self.proc else _read_pid(self.paths.host / "asterisk.pid")
        if pid:
            _terminate_group(pid, timeout)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None
        (self.paths.host / "asterisk.pid").unlink(missing_ok=True)

    def recordings(self) -> list[Path]:
        return sorted(self.paths.spool_host.glob("*"))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
