"""cellctl: controller of an automated magnetic particle inspection cell for fasteners."""

import os

__version__ = "0.1.0"

# The most pixels an image file may have to be decoded at all (cellctl.vision.images checks
# the header against it first). The largest camera image is the frame camera's 2464 x 2056
# (5.1 MP; the strip, 2048 lines of ~1000 px, 2 MP): 2**26 (67 MP) is 13 times that, and
# decoding it takes at most 268 MB (4 planes). OpenCV's decoders take the same bound from the
# environment, read once when OpenCV is loaded (by default 2**30: a 1 MB PNG then decodes to
# 1 GB): set here, before any cellctl module imports cv2. Verified with opencv-python-headless
# 5.1: a header over the limit makes cv2.imdecode raise cv2.error before it allocates.
MAX_IMAGE_PIXELS = 2**26
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_IMAGE_PIXELS)
