"""Where packets enter: offline files and stdin, live interfaces, the BPF prefilter, L2-L4 decode.

May import: dissectors/ (for BPF head tests) and its own modules; nothing else in sensor/.
"""
