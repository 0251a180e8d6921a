"""What runs on the board: detect (MTCNN) -> align (ArcFace template) -> classify (live/spoof), and tracking.

Python 3.8+, numpy, OpenCV and onnxruntime or KSNN only: nothing from convert/, deploy/ or the edgepad CLI.
    vim3_infer.py  the board's command          bundle.py    a bundle's models as a pipeline
    detector.py    MTCNN                         align.py     Umeyama similarity onto the ArcFace template
    classifier.py  live probability, decision    tracking.py  template matching + ONet between detections
    pipeline.py    one frame, timed per stage    frames.py    images, videos, cameras as BGR frames
    boxes.py       NMS, IoU                      backends/    onnxruntime, opencv, ksnn
    preprocess.py  image -> model input as the model card says
"""
