"""ONNX -> Caffe: the caffe.proto edgepad carries, one handler per ONNX op, the net builder and writer."""
