"""MDM exports against the register: a released device must be gone from MDM too.

``sources`` reads each kind of export into plain records, ``snapshot`` keeps one snapshot per
source, ``check`` compares the snapshots with the register (and tells release what the latest
snapshot shows), ``store`` holds their SQL.
"""
