"""fleetbench payload: runs one benchmark case on a host with the pinned stack; never imports Ansible."""
