"""The Caffe target: target.py (the entry: run(ctx)), onnx_to_caffe.py (the graph walk), one handler per ONNX op
(handlers/), the net builder and writer, the caffe.proto edgepad carries, OpenCV as the checking reader."""
