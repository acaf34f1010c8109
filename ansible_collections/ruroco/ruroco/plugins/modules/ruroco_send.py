#!/usr/bin/python
# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
# (MIT is compatible with the GNU General Public License v3.0+; ansible-test validate-modules
# looks for that name in every module header.)

from __future__ import annotations

DOCUMENTATION = r"""
module: ruroco_send
short_description: Knock a ruroco server to run one of its commands
version_added: 1.0.0
description:
  - Sends one encrypted ruroco packet per destination address (at most one IPv4 and one IPv6),
    exactly like C(ruroco-client send), so that the ruroco server of the target runs the
    command named O(command).
  - Runs entirely on the controller, using the C(ruroco) Python package and the client's
    counter file in O(conf_dir). Concurrent hosts (forks) wait for the client lock in turn, so
    every packet carries its own counter value.
  - The server never answers. With O(wait_for), the plugin polls a TCP port on the target after
    knocking and knocks again (with a fresh counter) until the port accepts or the time is up.
author: ruroco contributors (@ruroco)
requirements:
  - The C(ruroco) Python package on the controller, in the Python that runs Ansible.
options:
  command:
    description: Name of the command to run, as configured in the server's C(commands.toml).
    type: str
    default: default
  address:
    description:
      - Host name or IP address of the ruroco server, optionally with a port (C(host:port),
        C([ipv6]:port)); a port given here wins over O(port).
      - Defaults to the C(ansible_host) of the inventory host, else its C(inventory_hostname).
    type: str
  port:
    description: UDP port of the ruroco server when O(address) has none, 1 to 65535.
    type: int
    default: 80
  key_file:
    description:
      - File on the controller holding the key. A relative path is searched like other
        C(files) of the play or role.
      - A file encrypted with Ansible Vault (C(ansible-vault encrypt)) is decrypted, as
        M(ansible.builtin.copy) does (in memory with ansible-core 2.19 and later).
      - Exactly one of O(key_file) and O(key) is required.
    type: path
  key:
    description:
      - The key itself, for example from Ansible Vault. It never appears in results or logs.
      - Exactly one of O(key_file) and O(key) is required.
    type: str
  permissive:
    description:
      - Clear the packet's strict flag, so the server does not compare the claimed and the real
        source IP.
    type: bool
    default: false
  ip:
    description:
      - Source IP address to claim in the packet, for example the public address behind NAT.
    type: str
  ipv4:
    description: Only send over IPv4. Setting both O(ipv4) and O(ipv6) is the same as
      setting neither (IPv4 and IPv6, where the address has both).
    type: bool
    default: false
  ipv6:
    description: Only send over IPv6. See O(ipv4).
    type: bool
    default: false
  conf_dir:
    description:
      - Client configuration directory on the controller (holds C(counter) and C(client.lock)).
      - Defaults to E(RUROCO_CONF_DIR), else C(~/.config/ruroco), like C(ruroco-client). That
        is the environment of the controller's C(ansible-playbook) process; a task's
        C(environment) keyword does not reach it (it sets the managed host's environment).
    type: path
  send_delay_ms:
    description: Pause between the IPv4 and the IPv6 packet, in milliseconds (0 or more).
    type: int
    default: 50
  lock_timeout:
    description:
      - Seconds to wait for the client lock held by other forks or a running C(ruroco-client)
        (0 or more; V(0) fails at once if it is held).
    type: float
    default: 30
  protocol:
    description:
      - Wire format of the packet.
      - V(1) is this ruroco's format (94 bytes, AES-256-GCM-SIV), which the ruroco server of
        this collection takes by default.
      - V(0) is the format of the released ruroco 0.14.2 (93 bytes, AES-256-GCM), for servers of
        that release. A server of this collection takes it only with
        C(accept_protocol_0 = true) in its C(config.toml), which the C(ruroco.ruroco.ruroco_server)
        role writes with C(ruroco_server_accept_protocol_0=true).
      - Both formats share the client's counter in O(conf_dir).
    type: int
    choices: [0, 1]
    default: 1
    version_added: 1.1.0
  wait_for:
    description:
      - After knocking, wait until a TCP port on the target accepts connections, knocking again
        whenever it does not accept within O(wait_for.interval).
      - When the time is up, the task fails naming what the last try met, C(connection refused)
        (the host answered) or C(no answer) (every try timed out, as at a port a closed grant
        guards), and pointing to the server's log, where C(is on blocklist) for a key new to
        that server means the client needs C(ruroco-client reseed).
    type: dict
    suboptions:
      port:
        description: TCP port that the knocked command opens, 1-65535.
        type: int
        required: true
      host:
        description: Host to connect to; defaults to the host part of O(address).
        type: str
      timeout:
        description:
          - Seconds to keep knocking and polling before failing, 0-86400.
          - V(0) knocks once and tries the port once.
        type: float
        default: 30
      interval:
        description:
          - Seconds to poll after each knock before knocking again, 1-86400.
          - Knocking more often only meets the server's per-source rate limit (2 packets a
            second by default), whose refusals its fail2ban filter counts.
        type: float
        default: 2
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
    details: Runs entirely on the controller.
  become:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: >-
      Reports the destinations and command that would be knocked; sends nothing, takes no
      lock and uses no counter value. It fails where the task's options would make a real
      run fail: the C(ruroco) package missing on the controller, an unreadable or invalid
      key, a bad O(ip), an address that does not resolve, a O(wait_for) that cannot work.
      Problems of the controller's O(conf_dir) or counter file show only in a real run.
  connection:
    support: none
  delegation:
    support: none
    details: Always runs on the controller; delegation changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The protocol is silent, so a successful send only means the packet left the controller.
    Use O(wait_for) to check that the command had its effect.
seealso:
  - module: ruroco.ruroco.ruroco_key
"""

EXAMPLES = r"""
- name: Run the default command on the ruroco server of every host
  ruroco.ruroco.ruroco_send:
    key_file: files/ruroco.key

- name: Knock, then connect - open SSH and wait until it accepts
  ruroco.ruroco.ruroco_send:
    command: open_ssh
    key: "{{ vault_ruroco_key }}"
    wait_for:
      port: 22
      timeout: 60
      interval: 3

- name: Knock a server on another port over IPv4 only, claiming the NAT address
  ruroco.ruroco.ruroco_send:
    address: knock.example.org
    port: 34020
    command: open_port
    key_file: /home/ops/.config/ruroco/ruroco.key
    ipv4: true
    ip: 203.0.113.7
  register: knock

- name: Open SSH on a server of the released ruroco 0.14.2 (protocol 0)
  ruroco.ruroco.ruroco_send:
    command: open_ssh
    key_file: /home/ops/.config/ruroco/legacy.key
    protocol: 0
    wait_for:
      port: 22

- name: Show the counters that were used
  ansible.builtin.debug:
    msg: "{{ knock.destinations | map(attribute='counter') | list }}"
"""

RETURN = r"""
destinations:
  description:
    - One entry per packet sent, over all knocks, in order. In check mode, the destinations
      that would be knocked (the address resolved as for a real run), without counter.
  returned: always
  type: list
  elements: dict
  contains:
    destination:
      description: Address the packet went to (or would go to, in check mode).
      type: str
      sample: "192.0.2.10:80"
    counter:
      description: Counter value carried by the packet; null in check mode.
      type: int
      sample: 1725821510000000001
    error:
      description: Why sending to this destination failed, or null.
      type: str
      sample: null
knocks:
  description: How many times the server was knocked (0 in check mode).
  returned: always
  type: int
  sample: 1
command:
  description: The command name that was (or would be) sent.
  returned: always
  type: str
  sample: default
"""
