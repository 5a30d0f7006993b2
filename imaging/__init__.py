"""Medical image I/O: readers (NIfTI, DICOM, PNG/JPEG, MedMNIST npz), writers, intensity
normalisation, resizing, and the generated phantoms of the demo.

Convention everywhere in synthcohort: arrays are float32 in [0, 1], channel first,
(N, C, H, W) in 2D and (N, C, D, H, W) in 3D; masks are uint8 {0, 1} with C = 1.
"""
