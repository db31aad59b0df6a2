"""Datasets on disk: finding input images, YOLO and COCO formats, streaming resumable writing."""
