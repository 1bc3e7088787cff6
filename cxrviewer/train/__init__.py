"""cxrviewer.train"""
