"""``ruroco-commander``: the root-side half that turns a 24-byte socket message into a command.

It trusts only its Unix socket (file permissions); everything else about a request is
checked again here: the hash must name a configured command and the IP must be routable.
"""
