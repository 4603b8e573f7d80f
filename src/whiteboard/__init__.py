"""whiteboard: a clean, see-through whiteboard from a webcam stream, live in the browser on webcnn."""
