"""The ruroco client: turns a command name and a shared key into one UDP datagram per address.

Kept import-free so that ``ruroco-client send`` starts without loading click or ``ipaddress``.
"""
