"""Old path of engine.io.sources, kept for users' scripts (engine/ is grouped by role)."""
from .io.sources import (  # noqa: F401
    CameraSource, DECODE_SLACK_FRACTION, FRAME_COUNT_SLACK, Frame, FrameSource,
    IMAGE_EXTENSIONS, ImageSource, PiCameraSource, SEEK_AHEAD, SelectedFrames, VIDEO_EXTENSIONS,
    VideoFileSource, camera_available, check_decoded, decode_shortfall, frame_is_readable,
    is_image_path, list_cameras, open_source, open_video_capture, picamera2_cameras,
)
