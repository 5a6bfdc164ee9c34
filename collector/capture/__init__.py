"""Packet capture: offline pcap/pcapng reading (vectorised header walk), tshark runner, live capture ring."""
