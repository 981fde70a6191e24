"""Camera model, projection of points into the image, back-projection of depth to points, validity masks."""
